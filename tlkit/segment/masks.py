"""Segmentation masks as files: palette ("P") or 8-bit index ("L") PNGs of class indices.

A mask holds one class index per pixel: 0 is the background, 255 is "ignore" (never scored, no
loss: the PASCAL VOC convention for object borders and unlabelled pixels). A palette PNG stores
the indices and shows them in colour (the VOC colour map, :func:`palette`); an "L" PNG stores the
same indices as gray levels. Anything else (an RGB drawing, a 16-bit PNG, a JPEG, whose
compression would invent labels at every edge) is refused with one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tlkit.errors import DataError

IGNORE = 255
MASK_MODES = ("P", "L")
HOW = "save masks as palette or 8-bit grayscale PNGs of class indices (0 = background, 255 = ignore)"


def palette(n: int) -> np.ndarray:
    """The PASCAL VOC colour map: uint8 [n, 3], colour i from the bits of i interleaved over R, G, B (0 black)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The class indices of a mask file: uint8 [H, W].

    A palette ("P") PNG gives its indices, an "L" PNG its values. Any other file (RGB, RGBA,
    16-bit, JPEG, not an image) raises a one-line :class:`~tlkit.errors.DataError` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    p = os.fspath(path)
    try:
        with Image.open(p) as im:
            fmt, mode = im.format, im.mode
            if fmt != "PNG" or mode not in MASK_MODES:
                what = f"a {fmt or 'non-PNG'} image in mode {mode}"
                if mode in ("RGB", "RGBA"):
                    what += " (colours, not class indices)"
                elif mode.startswith("I"):
                    what += " (16-bit)"
                raise DataError(f"mask {p} is {what}: {HOW}")
            im.load()
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(f"mask {p} does not exist: {HOW}") from None
    except UnidentifiedImageError:
        raise DataError(f"mask {p} is not an image: {HOW}") from None
    except OSError as exc:
        raise DataError(f"mask {p} cannot be read ({exc}): {HOW}") from None


def write_mask(path: str | os.PathLike, mask: np.ndarray, n_classes: int) -> None:
    """Write ``mask`` (class indices [H, W], values < ``n_classes`` or 255) as a palette PNG with ``palette(256)``.

    Index 255 (ignore) gets the map's own colour 255 (cream, 224 224 192, as in PASCAL VOC's files). The bytes
    are a pure function of the mask.
    """
    from PIL import Image

    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"a mask is [H, W] of class indices, got shape {m.shape} for {os.fspath(path)}")
    bad = np.setdiff1d(np.unique(m), [*range(int(n_classes)), IGNORE])
    if bad.size:
        raise DataError(f"mask for {os.fspath(path)} has values {bad.tolist()} outside 0..{n_classes - 1} and 255")
    im = Image.fromarray(np.ascontiguousarray(m, dtype=np.uint8))  # mode "L"; putpalette makes it "P"
    im.putpalette(palette(256).reshape(-1).tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(os.fspath(path), format="PNG", optimize=False)
