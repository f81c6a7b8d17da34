"""Segmentation pictures: colour masks (PASCAL VOC colour map), a mask blended over its photo beside a
legend of the classes it holds, the pixel confusion matrix, and photo | truth | prediction rows.

Every PNG stores the words it shows (its title, its legend, the figures it quotes) as its ``Title`` text,
as :mod:`tlkit.plots` does, so a program can read what a person reads. Pillow draws the overlay (the
photo keeps its own pixels and size); matplotlib, imported inside functions, draws the other two.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import atomic_path
from tlkit.segment import metrics
from tlkit.segment.masks import palette

IGNORE = metrics.IGNORE
IGNORE_NAME = "ignore (255)"


def _mask(mask: Any, n_classes: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:  # scores / logits [H, W, C]
        m = m.argmax(axis=-1)
    if m.ndim != 2:
        raise ValueError(f"a mask must be [H, W] class indices or [H, W, C] scores, not {m.shape}")
    m = m.astype(np.int64)
    bad = (m < 0) | ((m >= n_classes) & (m != IGNORE))
    if bad.any():
        raise ValueError(f"the mask holds class {int(m[bad][0])}, outside 0..{n_classes - 1} and not {IGNORE}")
    return m


def colour_mask(mask: Any, n_classes: int) -> np.ndarray:
    """uint8 RGB [H, W, 3]: each pixel the VOC colour of its class (0 black; 255 VOC's void colour)."""
    return palette(256)[_mask(mask, n_classes)]


def blend(image: Any, mask: Any, n_classes: int, alpha: float = 0.5) -> np.ndarray:
    """uint8 [H, W, 3]: every pixel ``floor((1 - alpha) * photo + alpha * colour + 0.5)``, colour its class's
    (background's black included: the background is darkened, the objects keep their hue)."""
    img = np.asarray(image)
    m = _mask(mask, n_classes)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != m.shape:
        raise ValueError(f"image {img.shape} and mask {m.shape} must be [H, W, 3] and [H, W]")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1, not {alpha}")
    mixed = (1.0 - alpha) * np.clip(img.astype(np.float64), 0, 255) + alpha * palette(256)[m].astype(np.float64)
    return np.floor(mixed + 0.5).astype(np.uint8)


def legend_entries(mask: Any, classes: Sequence[str]) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(index, name, RGB) of each class the mask holds, in index order; 255 last, named ``ignore (255)``."""
    m = _mask(mask, len(classes))
    colours = palette(256)
    return [
        (int(i), IGNORE_NAME if i == IGNORE else str(classes[i]), tuple(int(v) for v in colours[i]))
        for i in np.unique(m)
    ]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _write_png(picture: Any, path: str | os.PathLike, title: str) -> Path:
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    if title:
        info.add_text("Title", title)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", pnginfo=info)
    return path


def overlay_png(
    image: Any, mask: Any, classes: Sequence[str], path: str | os.PathLike, *, alpha: float = 0.5, title: str = ""
) -> Path:
    """The mask blended over the photo (:func:`blend`), at the photo's size in the top-left corner (pixel
    (y, x) of the PNG is the blend of photo pixel (y, x)), with a white panel on its right: ``title``, then a
    colour swatch and the name of each class the mask holds (:func:`legend_entries`). The PNG's ``Title``
    text is ``title`` (if any) then ``legend: name, name, ...``."""
    from PIL import Image, ImageDraw

    shown = blend(image, mask, len(classes), alpha)
    entries = legend_entries(mask, classes)
    h, w = shown.shape[:2]
    size = max(12, min(h, 1200) // 30)
    font = _font(size)
    pad, line = size // 2, int(size * 1.5)
    heads = textwrap.wrap(title, 40) if title else []
    texts = [*heads, *(name for _, name, _ in entries)]
    text_w = max((font.getlength(t) for t in texts), default=0)
    panel = int(pad * 3 + line + text_w)
    canvas = Image.new("RGB", (w + panel, max(h, pad * 2 + line * (len(heads) + len(entries)))), "white")
    canvas.paste(Image.fromarray(shown), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for head in heads:
        draw.text((w + pad, y), head, fill="black", font=font)
        y += line
    for _, name, rgb in entries:
        draw.rectangle((w + pad, y + 2, w + pad + line - 4, y + line - 2), fill=rgb, outline="black")
        draw.text((w + 2 * pad + line, y + (line - size) // 2), name, fill="black", font=font)
        y += line
    words = [*([title] if title else []), "legend: " + ", ".join(name for _, name, _ in entries)]
    return _write_png(canvas, path, "\n".join(words))


def confusion_png(conf: Any, classes: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """The pixel confusion matrix (rows true, columns predicted; colour = fraction of the true class, cells
    = pixel counts) by :func:`tlkit.plots.confusion_matrix`, titled with ``title``, the pixel accuracy
    and the mean IoU it holds (:func:`tlkit.segment.metrics.scores`)."""
    from tlkit import plots

    s = metrics.scores(conf, classes)
    fig = "n/a" if s["mean_iou"] is None else f"{s['pixel_accuracy']:.4f}, mean IoU {s['mean_iou']:.4f}"
    lines = [*([title] if title else []), f"pixel accuracy {fig} ({s['pixels']} pixels)"]
    return plots.confusion_matrix(
        np.asarray(conf), list(classes), path, title="\n".join([*lines, "rows: true, columns: predicted"])
    )


def examples_png(
    rows: Sequence[tuple[Any, ...]],
    classes: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    names: Sequence[str] = ("prediction",),
) -> Path:
    """One row per example: photo | truth | prediction (colour masks), each prediction titled with that
    image's mean IoU, and below them a legend of every class in any truth or prediction. A row may hold
    several predictions (photo, truth, pred_1, ..., pred_k), one column each, headed by ``names``
    (two models side by side). The PNG's ``Title`` text holds ``title``, one ``example i: mean IoU x``
    line per row (``name mean IoU x`` per column when there are several), and the legend's names."""
    from matplotlib.patches import Patch

    from tlkit.plots import _pyplot, _save

    if not rows:
        raise ValueError("no examples to draw")
    plt = _pyplot()
    n, k = len(classes), len(rows[0]) - 2
    if k < 1 or len(names) != k or any(len(row) != k + 2 for row in rows):
        raise ValueError(f"each row must be (photo, truth, {k} prediction(s)) with a name for each, got {len(names)}")
    fig, axes = plt.subplots(
        len(rows), 2 + k, figsize=(3 * (2 + k), 3 * len(rows)), squeeze=False, layout="constrained"
    )
    present: set[int] = set()
    said = [title] if title else []
    for r, (image, truth, *preds) in enumerate(rows):
        t = _mask(truth, n)
        panels = [
            (np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8), "photo"),
            (colour_mask(t, n), "truth"),
        ]
        figures = []
        for name, pred in zip(names, preds):
            p = _mask(pred, n)
            if t.shape != p.shape or np.shape(image)[:2] != t.shape:
                raise ValueError(f"example {r}: photo {np.shape(image)}, truth {t.shape}, prediction {p.shape} differ")
            miou = metrics.scores(metrics.confusion(t, np.where(p == IGNORE, 0, p), n), classes)["mean_iou"]
            shown = "n/a" if miou is None else f"{miou:.3f}"
            figures.append(shown if k == 1 else f"{name} mean IoU {shown}")
            panels.append((colour_mask(p, n), name + ("" if miou is None else f" (mean IoU {miou:.3f})")))
            present |= set(np.unique(p).tolist())
        said.append(f"example {r + 1}: " + ("mean IoU " + figures[0] if k == 1 else ", ".join(figures)))
        present |= set(np.unique(t).tolist())
        for ax, (shown, head) in zip(axes[r], panels):
            ax.imshow(shown, interpolation="nearest")
            ax.set_title(head, fontsize=9)
            ax.axis("off")
    colours = palette(256)
    legend = [(i, IGNORE_NAME if i == IGNORE else str(classes[i])) for i in sorted(present)]
    handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="black", lw=0.5, label=name) for i, name in legend]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    said.append("legend: " + ", ".join(name for _, name in legend))
    return _save(fig, path, "\n".join(said))
