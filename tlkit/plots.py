"""Pictures a person would rather look at than read: curves, confusion matrices, score-map overlays.

Everything renders headless (matplotlib's Agg backend) straight to PNG, and
writes atomically so a half-written file never replaces a good one.
"""

from __future__ import annotations

import os
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


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and validation); stage changes marked.

    ``history`` rows hold ``epoch`` and any of ``loss``, ``val_loss``, ``accuracy``,
    ``val_accuracy``, ``stage``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [int(r["epoch"]) + 1 for r in history]
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = [r.get(prefix + key) for r in history]
            if any(v is not None and v == v for v in values):
                ax.plot(
                    epochs,
                    [np.nan if v is None else float(v) for v in values],
                    style,
                    ms=3,
                    label=("validation " if prefix else "train ") + label,
                )
        stages = [r.get("stage") for r in history]
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(epochs[i] - 0.5, color="grey", ls="--", lw=1)
                ax.text(epochs[i] - 0.45, ax.get_ylim()[1], f" stage {stages[i]}", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "confusion matrix (rows: true, columns: predicted)",
) -> Path:
    """Row-normalised confusion matrix with counts written in each cell (up to 30 classes)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    size = min(2 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
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
    return _save(fig, path)


def score_map_overlay(
    image: np.ndarray, score_map: np.ndarray, path: str | os.PathLike, *, title: str = "", alpha: float = 0.5
) -> Path:
    """Overlay a (h, w) class-score map on an RGB image (upsampled to the image size)."""
    plt = _pyplot()
    image = np.asarray(image)
    score_map = np.asarray(score_map, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    axes[0].imshow(image.astype(np.uint8) if image.max() > 1 else image)
    axes[0].set_title("image")
    axes[1].imshow(image.astype(np.uint8) if image.max() > 1 else image)
    h, w = image.shape[:2]
    im = axes[1].imshow(
        score_map,
        cmap="jet",
        alpha=alpha,
        extent=(0, w, h, 0),
        interpolation="bilinear",
        vmin=0,
        vmax=max(float(score_map.max()), 1e-6),
    )
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04, label="score")
    axes[1].set_title(title or "class score map")
    for ax in axes:
        ax.axis("off")
    return _save(fig, path)


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
