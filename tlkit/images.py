"""Reading user image files safely: JPEG, PNG, BMP, GIF (first frame); any mode becomes RGB.

Used wherever a file must be checked or decoded outside a TensorFlow graph
(preflight checks, ``tlkit predict``). Every failure is an :class:`ImageError`
whose ``reason`` is a short, stable code a report can group by.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

# The ImageNet evaluation centre crop, 224 / (224 + 32): `tlkit predict` and exports use it.
CROP_FRACTION = 0.875
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Larger than any photo a classifier needs; PIL's own bomb limit is ~179 MP.
MAX_PIXELS = 64_000_000


from tlkit.errors import ImageError  # noqa: E402  (re-exported)


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the file name has one of the accepted image extensions."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def load_rgb(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` fully to an RGB ``uint8`` array (H, W, 3), or raise :class:`ImageError`.

    Grayscale, palette and RGBA images become RGB (alpha dropped, as TensorFlow does);
    animated GIFs give their first frame. Checks the header's size before
    decoding, so a decompression bomb is refused without allocating it.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(p, "missing", "no such file")
    if p.stat().st_size == 0:
        raise ImageError(p, "empty", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if im.format not in ("JPEG", "PNG", "BMP", "GIF", "MPO"):
                    raise ImageError(p, "unsupported_format", f"format {im.format}")
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(p, "too_large", f"{w}x{h} pixels > {max_pixels:,}")
                im.seek(0)
                im.load()
                return _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(p, "too_large", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(p, "not_an_image", "not a JPEG/PNG/BMP/GIF file") from None
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(p, reason, str(exc)) from None
    except (SyntaxError, ValueError, IndexError) as exc:  # PIL raises these on garbage headers
        raise ImageError(p, "corrupt", str(exc)) from None


def _to_rgb(im: "object") -> np.ndarray:
    # Alpha is dropped, not composited: the same pixels tf.io.decode_image(channels=3)
    # gives the training pipeline, so predictions agree with training.
    if im.mode.startswith("I"):  # type: ignore[attr-defined]
        # 16-bit (and 32-bit integer) grayscale: PIL's convert("RGB") clips these to white;
        # TensorFlow keeps the high byte, and so do we.
        wide = np.asarray(im, dtype=np.int64)
        gray = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)  # type: ignore[attr-defined]
