"""The images an export's checks send: probe requests, requests a server must refuse, and photo crops.

:func:`probe_images` are real encoded files (JPEG, PNG, BMP, GIF in several modes; for exports
that decode them, a WebP with alpha and a JPEG stored sideways under EXIF orientation 6) so
every decoder path of the serving graph runs; :func:`refusal_requests` are the garbage, truncated,
over-the-pixel-limit and empty requests a server must refuse with a ``tlkit serving:`` line
(:func:`png_header_only` makes the over-the-limit one in a few dozen bytes);
:func:`synthetic_pixels` are seeded crops of scikit-image photos that every TFLite check runs on.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.export.serving_decode import (
    BAD_IMAGE_MESSAGE,
    BYTES_INPUT,
    EMPTY_REQUEST_MESSAGE,
    UNDECODABLE_MESSAGE,
)

SYNTHETIC_IMAGES = 96  # seeded crops of scikit-image photos in every TFLite check


def _encode(im: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def probe_images(phone: bool = True) -> list[bytes]:
    """Probe requests for verification: a real photo (JPEG) and small PNG, BMP and GIF images
    in other sizes and modes (grayscale, RGBA, palette), so every decoder path is exercised.

    ``phone``: add a WebP with alpha and a JPEG tagged with EXIF orientation 6 (stored
    sideways), for exports whose card says they decode them (``preprocessing.exif_orientation``);
    an older export would refuse the WebP and serve the JPEG sideways.
    """
    from PIL import Image
    from skimage import data

    from tlkit.data.orientation import stored_numpy

    yy, xx = np.mgrid[0:97, 0:131]
    gray = ((xx * 2 + yy) % 256).astype(np.uint8)
    rgba = np.stack([gray, 255 - gray, (xx * 7 % 256).astype(np.uint8), np.full_like(gray, 200)], -1)
    extra = []
    if phone:
        exif = Image.Exif()
        exif[0x0112] = 6
        sideways = Image.fromarray(stored_numpy(data.astronaut()[::4, 64:448:3], 6))
        extra = [
            _encode(Image.fromarray(rgba, "RGBA"), "WEBP", quality=90),
            _encode(sideways, "JPEG", exif=exif.tobytes()),
        ]
    return [
        _encode(Image.fromarray(data.chelsea()), "JPEG", quality=95),
        _encode(Image.fromarray(gray, "L"), "PNG"),
        _encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        _encode(Image.fromarray(np.ascontiguousarray(rgba[:60, :80, :3])), "BMP"),
        _encode(Image.fromarray(np.ascontiguousarray(rgba[:, :, :3])).convert("P"), "GIF"),
        *extra,
    ]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels, with one empty IDAT.

    A few dozen bytes; what a decompression bomb looks like to a header check.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def refusal_requests(probes: Sequence[bytes], max_pixels: int | None) -> dict[str, tuple[list[bytes], str]]:
    """Requests a server must refuse, each with a fragment its ``tlkit serving:`` line must hold.

    ``max_pixels`` is the card's limit; None for exports made before tlkit checked headers in
    the graph, which are only sent garbage (what they could refuse).
    """
    garbage = ([probes[0], b"this is not an image"], f"{BYTES_INPUT}[1] {BAD_IMAGE_MESSAGE}")
    if not max_pixels:
        return {"garbage": garbage}
    side = math.isqrt(int(max_pixels)) + 1  # side * side > max_pixels
    return {
        "garbage": garbage,
        "truncated": ([probes[0][: len(probes[0]) // 3]], f"{BYTES_INPUT}[0] {UNDECODABLE_MESSAGE}"),
        "too_large": ([png_header_only(side, side)], f"{BYTES_INPUT}[0] is a PNG of {side}x{side} = "),
        "empty": ([], EMPTY_REQUEST_MESSAGE),
    }


# Runs in a fresh interpreter with plain TensorFlow: tlkit is made unimportable first, so


def synthetic_pixels(size: tuple[int, int], n: int = SYNTHETIC_IMAGES, seed: int = 0) -> np.ndarray:
    """``n`` seeded crops of scikit-image's colour photos (random box, aspect and flip), resized
    to ``size`` (antialiased bilinear): float32 [n, H, W, 3] in 0..255."""
    from skimage import data

    photos = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.retina(),
    ]
    rng = np.random.default_rng(seed)
    out = np.empty((n, *size, 3), np.float32)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        area = rng.uniform(0.1, 1.0) * h * w
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, max(8, round(np.sqrt(area / ratio)))))
        cw = int(min(w, max(8, round(np.sqrt(area * ratio)))))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = tf.image.resize(crop.astype(np.float32), size, method="bilinear", antialias=True).numpy()
    return np.clip(out, 0, 255)
