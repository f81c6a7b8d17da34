"""The picture: one row per channel; for each of its strongest activations the image patch under
the receptive field, then each projection of that one activation over the same patch.

Drawn with PIL at a fixed cell size, so the file's size in pixels follows from the counts
(:func:`grid_size`); what the picture shows is also written as the PNG's ``Title`` text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import atomic_path

CELL = 64  # pixels per patch or projection
PAD = 4  # between cells
LABEL_W = 88  # the row's label: channel and its strongest value
BACKGROUND = (255, 255, 255)


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid of ``rows`` channels and ``cols`` cells per row."""
    return (LABEL_W + cols * (CELL + PAD) + PAD, rows * (CELL + PAD) + PAD)


def projection_rgb(p: np.ndarray) -> np.ndarray:
    """A signed projection [h, w, 3] as uint8: zero is mid-grey, the largest magnitude 0 or 255
    (one scale for all three channels, so colours and signs stay comparable)."""
    m = float(np.abs(p).max())
    scaled = 0.5 + 0.5 * (p / m if m > 0 else p)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def _fit(img: np.ndarray) -> Any:
    """``img`` (uint8 [h, w, 3]) scaled to fit a CELL x CELL square (aspect kept, grey margin)."""
    from PIL import Image

    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)  # a one-channel model's input, shown grey
    h, w = img.shape[:2]
    scale = CELL / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(img).resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
    cell = Image.new("RGB", (CELL, CELL), (128, 128, 128))
    cell.paste(small, ((CELL - size[0]) // 2, (CELL - size[1]) // 2))
    return cell


def write_grid(
    rows: list[list[Any]], images: np.ndarray, methods: list[str], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Write the grid of :func:`tlkit.visualize.project.project`'s rows (a row may be shorter than the
    longest: fewer images than ``top``) as a PNG at ``path``."""
    from PIL import Image, ImageDraw, PngImagePlugin

    per = 1 + len(methods)
    cols = per * max((len(r) for r in rows), default=0)
    canvas = Image.new("RGB", grid_size(len(rows), cols), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = PAD + r * (CELL + PAD)
        if row:
            draw.text((PAD, top + 4), f"channel {row[0].channel}", fill=(0, 0, 0))
            draw.text((PAD, top + 20), f"max {row[0].value:.3g}", fill=(0, 0, 0))
        for k, pick in enumerate(row):
            t, left, b, rt = pick.box
            cells = [np.clip(images[pick.image][t:b, left:rt], 0, 255).astype(np.uint8)]
            cells += [projection_rgb(pick.projections[m][t:b, left:rt]) for m in methods]
            for j, cell in enumerate(cells):
                x0 = LABEL_W + (k * per + j) * (CELL + PAD) + PAD
                canvas.paste(_fit(cell), (x0, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if title:
        info.add_text("Title", title)
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG", pnginfo=info)
    return path
