"""Pictures a person would rather look at than read: curves, confusion matrices, score-map overlays.

Everything renders headless (matplotlib's Agg backend) straight to PNG, and
writes atomically so a half-written file never replaces a good one.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike, title: str = "") -> Path:
    """Write ``fig`` as PNG; ``title`` (the words the picture states: a score, an accuracy) is also
    stored as the PNG's ``Title`` text, so a program can read what a person reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Title": title} if title else None)
    finally:
        _pyplot().close(fig)
    return path


def kept_epoch(history: Sequence[dict[str, Any]]) -> int | None:
    """The 1-based epoch whose weights a run keeps as ``best.keras``: the first epoch with the
    highest ``val_accuracy`` (``accuracy`` when there is no validation), as the run's recorder
    chooses it (a later epoch replaces the best only when strictly better); a multi-label run's
    ``val_pr_auc`` (``pr_auc``) when the history has it."""
    for key in ("val_pr_auc", "pr_auc", "val_mean_iou", "mean_iou", "val_accuracy", "accuracy"):  # + segmentation
        values = [r.get(key) for r in history]
        scored = [(float(v), int(r["epoch"]) + 1) for v, r in zip(values, history) if v is not None and v == v]
        if scored:
            best = max(v for v, _ in scored)
            return next(e for v, e in scored if v == best)
    return None


def training_curves(
    history: Sequence[dict[str, Any]], path: str | os.PathLike, *, title: str = "", kept: int | None = None
) -> Path:
    """Loss and accuracy per epoch (train and validation); stage changes and the kept checkpoint marked.

    ``history`` rows hold ``epoch`` (0-based) and any of ``loss``, ``val_loss``, ``accuracy``,
    ``val_accuracy``, ``stage``. Epochs are drawn 1-based on integer ticks. ``kept`` is the
    1-based epoch of the checkpoint the run keeps (default: :func:`kept_epoch`); it gets a
    vertical line and a star on each validation curve (on the train curve without validation).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    epochs = [int(r["epoch"]) + 1 for r in history]
    kept = kept_epoch(history) if kept is None else int(kept)
    # A multi-label run (no accuracy) draws the PR AUC that chooses its checkpoint.
    # A segmentation run (tlkit.segment) draws its mean IoU.
    score = next((k for k in ("pr_auc", "mean_iou") if any(r.get(k) is not None for r in history)), "accuracy")
    shown = {"pr_auc": "PR AUC", "mean_iou": "mean IoU"}.get(score, score)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], score, shown)):
        drawn = {}
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = [r.get(prefix + key) for r in history]
            if any(v is not None and v == v for v in values):
                ys = [np.nan if v is None else float(v) for v in values]
                ax.plot(epochs, ys, style, ms=3, label=("validation " if prefix else "train ") + label)
                drawn[prefix] = ys
        stages = [r.get("stage") for r in history]
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(epochs[i] - 0.5, color="grey", ls="--", lw=1)
                ax.text(epochs[i] - 0.45, ax.get_ylim()[1], f" stage {stages[i]}", va="top", fontsize=8, color="grey")
        if kept is not None and kept in epochs:
            ax.axvline(kept, color="C3", ls=":", lw=1.2)
            ys = drawn.get("val_", drawn.get(""))
            if ys is not None:
                ax.plot(
                    [kept], [ys[epochs.index(kept)]], "*", color="C3", ms=12, label=f"kept checkpoint (epoch {kept})"
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    legend = f"kept checkpoint: epoch {kept}" if kept is not None and kept in epochs else ""
    return _save(fig, path, "\n".join(t for t in (title, legend) if t))


def confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    split: str | None = None,
    about: str = "",
) -> Path:
    """Row-normalised confusion matrix with counts written in each cell (up to 30 classes).

    The default title states ``about`` (e.g. the run), the accuracy the matrix holds (its
    diagonal over its total: the top-1 accuracy of the predictions it counts) and, when
    given, the ``split`` it was measured on.
    """
    fig, title = _confusion_figure(matrix, class_names, title=title, split=split, about=about)
    return _save(fig, path, title)


def confusion_matrix_png(
    matrix: np.ndarray, class_names: Sequence[str], *, split: str | None = None, about: str = ""
) -> bytes:
    """The picture :func:`confusion_matrix` draws, as PNG bytes (for TensorBoard's image summaries)."""
    import io

    fig, title = _confusion_figure(matrix, class_names, title=None, split=split, about=about)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Title": title})
    finally:
        _pyplot().close(fig)
    return buf.getvalue()


def _confusion_figure(
    matrix: np.ndarray, class_names: Sequence[str], *, title: str | None, split: str | None, about: str
) -> tuple[Any, str]:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    if title is None:
        total = int(matrix.sum())
        acc = float(np.trace(matrix)) / total if total else float("nan")
        on = {None: "", "": "", "all": "all files, "}.get(split, f"{split} split, ")
        lines = [about] if about else []
        title = "\n".join([*lines, f"accuracy {acc:.4f} ({on}{total} images)", "rows: true, columns: predicted"])
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    size = min(2 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(matrix[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title(title)
    return fig, title


NO_DATA_COLOR = "#b0b0b0"  # opaque grey: positions no window covers are not a score of 0


def score_map_overlay(
    image: np.ndarray,
    score_map: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    alpha: float = 0.5,
    extent: tuple[float, float, float, float] | None = None,
) -> Path:
    """Overlay a (h, w) class-score map on an RGB image.

    NaN cells of ``score_map`` hold no data (no window covers them): they are drawn in
    :data:`NO_DATA_COLOR`, named in the legend, and left out of the colour scale. The title
    is ``title`` followed by the highest value on this map, so the number it shows is one
    the picture shows. ``extent`` (left, right, bottom, top in image pixels) places the map;
    by default it spans the image.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _pyplot()
    image = np.asarray(image)
    score_map = np.asarray(score_map, dtype=float)
    missing = ~np.isfinite(score_map)
    if missing.all():
        raise ValueError("the score map holds no data")
    top = float(np.nanmax(np.where(missing, np.nan, score_map)))
    low = float(np.nanmin(np.where(missing, np.nan, score_map)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), layout="constrained")
    shown = image.astype(np.uint8) if image.max() > 1 else image
    h, w = image.shape[:2]
    extent = extent or (0, w, h, 0)
    axes[0].imshow(shown)
    axes[0].set_title("image")
    axes[1].imshow(shown)
    cmap = plt.get_cmap("jet").with_extremes(bad=(0, 0, 0, 0))  # the no-data layer below draws these cells
    # Nearest: each cell is drawn as one block, so no colour is interpolated into cells without data.
    im = axes[1].imshow(
        np.ma.masked_array(score_map, missing),
        cmap=cmap,
        alpha=alpha,
        extent=extent,
        interpolation="nearest",
        vmin=min(0.0, low),
        vmax=max(top, 1e-6),
    )
    handles = []
    if missing.any():
        axes[1].imshow(
            np.ma.masked_array(np.zeros_like(score_map), ~missing),
            cmap=ListedColormap([NO_DATA_COLOR]),
            extent=extent,
            interpolation="nearest",
        )
        handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="black", lw=0.5, label="no data: no window covers it"))
    for ax in axes:
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")
    # The colour bar sits beside the drawn image (axes coordinates follow its aspect), from its
    # bottom to its top, so it cannot reach up into the title.
    cax = axes[1].inset_axes((1.03, 0.0, 0.04, 1.0))
    fig.colorbar(im, cax=cax, label="score")
    if handles:
        axes[1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False)
    head = textwrap.fill(title or "class score", 48)
    axes[1].set_title(f"{head}\nmax {top:.3f} on this map")
    return _save(fig, path, axes[1].get_title())


def line_plot(
    x: Sequence[float],
    y: Sequence[float],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    mark_x: float | None = None,
) -> Path:
    """A single curve (e.g. loss against learning rate for the LR range test)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, y, "-")
    if logx:
        ax.set_xscale("log")
    if mark_x is not None:
        ax.axvline(mark_x, color="red", ls="--", lw=1, label=f"suggested {mark_x:.2g}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def lr_range_plot(found: dict[str, Any], path: str | os.PathLike, *, title: str = "LR range test") -> Path:
    """The LR range test as :func:`tlkit.finetune.lr_finder.lr_range_test` returns it: the loss of every
    step (dots), the smoothed curve the suggestion reads, the falling region (shaded),
    the minimum, the divergence point and the suggested rate. A refused curve (the
    ``curve`` of the error: rates and per-step losses only) is drawn as dots."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lrs = np.asarray(found["lr"], dtype=float)
    if found.get("raw_loss") is not None:
        ax.plot(lrs, found["raw_loss"], ".", ms=3, color="grey", alpha=0.5, label="loss per step")
    if found.get("loss") is not None:
        ax.plot(lrs, found["loss"], "-", color="C0", lw=2, label="smoothed loss")
    if found.get("falling"):
        lo, hi = found["falling"]
        ax.axvspan(lo, hi, color="C2", alpha=0.15, label=f"loss falls {lo:.2g}..{hi:.2g}")
    if found.get("min_loss_lr") is not None:
        i = int(np.argmin(np.abs(lrs - found["min_loss_lr"])))
        ax.plot([lrs[i]], [found["loss"][i]], "v", color="C1", ms=8, label=f"minimum at {lrs[i]:.2g}")
    if found.get("diverged_lr") is not None:
        ax.axvline(found["diverged_lr"], color="black", ls=":", lw=1, label=f"diverged at {found['diverged_lr']:.2g}")
    if found.get("suggested_lr") is not None:
        ax.axvline(found["suggested_lr"], color="red", ls="--", lw=1.5, label=f"suggested {found['suggested_lr']:.2g}")
    ax.set_xscale("log")
    # The losses past the minimum can be huge: scale to the smoothed curve and to most of
    # the per-step losses before the minimum, so the region that matters stays readable.
    smooth = np.asarray(found["loss"] if found.get("loss") is not None else found.get("raw_loss", []), dtype=float)
    if smooth.size and np.isfinite(smooth).all():
        top = float(smooth.max())
        if found.get("raw_loss") is not None:
            before = np.asarray(found["raw_loss"], dtype=float)[: int(np.argmin(smooth)) + 1]
            top = max(top, float(np.percentile(before, 95)))
        ax.set_ylim(min(0.0, float(smooth.min())), top * 1.1 if top > 0 else 1.0)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
