"""Reading user image files safely: JPEG, PNG, BMP, GIF and WebP (first frame), HEIC/HEIF (with
the ``heic`` extra) and AVIF (where Pillow reads it); any mode becomes RGB, and JPEGs are turned
upright by their EXIF orientation (:mod:`tlkit.data.orientation`).

Used wherever a file must be checked or decoded outside a TensorFlow graph
(preflight checks, ``tlkit predict``). Every failure is an :class:`ImageError`
whose ``reason`` is a short, stable code a report can group by.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

# The ImageNet evaluation centre crop, 224 / (224 + 32): `tlkit predict` and exports use it.
CROP_FRACTION = 0.875
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".heic", ".heif", ".avif")
# Formats PIL may name (MPO: a multi-picture JPEG, read as its first picture).
FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "HEIF", "AVIF")
HEIC_EXTRA = "heic"  # pyproject's optional extra that installs pillow-heif
HEIC_INSTALL = f'pip install "tlkit[{HEIC_EXTRA}]"'
# ISO-BMFF brands (bytes 8..12 of the file) of HEIF images and of AVIF images.
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif")
AVIF_BRANDS = (b"avif", b"avis")
# Larger than any photo a classifier needs; PIL's own bomb limit is ~179 MP.
MAX_PIXELS = 64_000_000

from tlkit.data.orientation import SWAPS, exif_orientation, upright_numpy  # noqa: E402
from tlkit.errors import ImageError  # noqa: E402  (after MAX_PIXELS, which light importers read)

NEEDS_EXTRA = "needs_extra"  # the ImageError reason of a format whose decoder is not installed


def heif_support() -> bool:
    """True if HEIC/HEIF files can be decoded (pillow-heif installed: ``pip install "tlkit[heic]"``).

    Registers pillow-heif's opener with PIL on the first call.
    """
    global _HEIF
    with _HEIF_LOCK:  # the preflight checks files in threads: one import, one registration
        if _HEIF is None:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener()
                _HEIF = True
            except ImportError:
                _HEIF = False
    return _HEIF


_HEIF: bool | None = None
_HEIF_LOCK = threading.Lock()


def bmff_kind(head: bytes) -> str | None:
    """The kind of image an ISO-BMFF file holds, from its first bytes (the ``ftyp`` box): HEIF, AVIF or None."""
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in HEIF_BRANDS:
        return "HEIF"
    if brand in AVIF_BRANDS:
        return "AVIF"
    return None


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the file name has one of the accepted image extensions."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading in binary mode if it is a regular file, else raise :class:`ImageError`.

    Reasons: ``missing`` (no such path), ``dangling_link`` (a symbolic link whose target
    does not exist, or a link loop), ``not_a_file`` (a FIFO, socket, device or directory),
    ``unreadable`` (permission denied and other OS errors). The file is opened with
    ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor: opening a FIFO
    without it blocks until a writer appears (forever), and a check before opening could
    be raced by a rename.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(p):
            raise ImageError(p, "dangling_link", f"symbolic link to {os.readlink(p)}, which does not exist") from None
        raise ImageError(p, "missing", "no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(p, "dangling_link", "symbolic link loop") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket (or a FIFO on some systems)
            raise ImageError(p, "not_a_file", _kind(p)) from None
        raise ImageError(p, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(p, "not_a_file", _kind(p, st.st_mode))
        if hasattr(os, "O_NONBLOCK"):  # back to blocking reads: a regular file never blocks anyway
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(path: str, mode: int | None = None) -> str:
    """What a non-regular path is, in words (without opening it)."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return "not a regular file"
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"{words}, not a regular file"
    return "not a regular file"


def load_rgb(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` fully to an RGB ``uint8`` array (H, W, 3), or raise :class:`ImageError`.

    Grayscale, palette and RGBA images become RGB (alpha dropped, as TensorFlow does);
    animated GIFs give their first frame. Checks the header's size before
    decoding, so a decompression bomb is refused without allocating it. Only regular
    files are opened (see :func:`open_regular`). A ``gs://`` or ``s3://`` path is read from its
    bucket (a missing object is ``missing``; a refusal of the store is a one-line tlkit error).
    """
    if "://" in os.fspath(path):
        return _load_object(os.fspath(path), max_pixels)
    with open_regular(path) as f:
        return decode_rgb(f, path, max_pixels=max_pixels)[0]


def _load_object(url: str, max_pixels: int) -> np.ndarray:
    """:func:`load_rgb` of an object on a bucket (``file://`` URLs: the local file)."""
    import io

    from tlkit.storage.objects import read_many
    from tlkit.storage.remote import check_scheme, is_remote, local_path, storage_error

    check_scheme(url)
    if not is_remote(url):
        return load_rgb(local_path(url), max_pixels=max_pixels)
    data = read_many([url])[0]
    if isinstance(data, FileNotFoundError):
        raise ImageError(url, "missing", "no such object")
    if isinstance(data, BaseException):
        raise storage_error(url, data, "read") from data
    return decode_rgb(io.BytesIO(data), url, max_pixels=max_pixels)[0]


def decode_rgb(
    f: BinaryIO, path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, str, str, int]:
    """Decode an open image file fully: (upright RGB ``uint8`` array, the file's own mode, its
    format, the EXIF orientation applied: 1 for none).

    ``path`` names the file in errors. An empty file is ``empty``; see :func:`load_rgb`.
    """
    with _checked_image(f, path, max_pixels) as im:
        mode, fmt = im.mode, im.format or ""
        orientation = _orientation(im)
        im.seek(0)
        im.load()
        return upright_numpy(_to_rgb(im), orientation), mode, fmt, orientation


def _orientation(im: Any) -> int:
    """The EXIF orientation a JPEG's pixels are turned by (1 for other formats; see tlkit.data.orientation)."""
    if im.format not in ("JPEG", "MPO"):
        return 1
    return exif_orientation(im.info.get("exif"))


@contextlib.contextmanager
def _checked_image(f: BinaryIO, path: str | os.PathLike, max_pixels: int) -> Iterator[Any]:
    """The open PIL image once its header passed (format, pixel bound); PIL's errors as :class:`ImageError`.

    What a header shows is judged the same way for a full decode and a header-only read.
    """
    from PIL import Image, UnidentifiedImageError

    p = os.fspath(path)  # not Path(): that would turn gs://b/x into gs:/b/x in the messages
    head = f.read(12)
    if not head:
        raise ImageError(p, "empty", "zero bytes")
    f.seek(0)
    kind = bmff_kind(head)
    if kind == "HEIF" and not heif_support():
        raise ImageError(
            p, NEEDS_EXTRA, f"a HEIC/HEIF photo: decoding it needs pillow-heif, which is not installed ({HEIC_INSTALL})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                if im.format not in FORMATS:
                    raise ImageError(p, "unsupported_format", f"format {im.format}")
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(p, "too_large", f"{w}x{h} pixels > {max_pixels:,}")
                yield im
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(p, "too_large", str(exc)) from None
    except UnidentifiedImageError:
        if kind == "AVIF":  # a Pillow built without libavif (Pillow >= 11.3 wheels have it)
            raise ImageError(
                p, NEEDS_EXTRA, "an AVIF image: this Pillow cannot decode AVIF (pip install -U pillow)"
            ) from None
        raise ImageError(p, "not_an_image", "not a JPEG/PNG/BMP/GIF/WebP/HEIC/AVIF file") from None
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(p, reason, str(exc)) from None
    except (SyntaxError, ValueError, IndexError) as exc:  # PIL raises these on garbage headers
        raise ImageError(p, "corrupt", str(exc)) from None


def _to_rgb(im: object) -> np.ndarray:
    # Alpha is dropped, not composited: the same pixels tf.io.decode_image(channels=3)
    # gives the training pipeline, so predictions agree with training.
    if im.mode.startswith("I"):  # type: ignore[attr-defined]
        # 16-bit (and 32-bit integer) grayscale: PIL's convert("RGB") clips these to white;
        # TensorFlow keeps the high byte, and so do we.
        wide = np.asarray(im, dtype=np.int64)
        gray = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)  # type: ignore[attr-defined]


def read_header(
    f: BinaryIO, path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS
) -> tuple[int, int, str, str, int]:
    """(height, width, mode, format, EXIF orientation) of an open image file from its header alone,
    or :class:`ImageError`. Height and width are the upright image's.

    The same reasons as :func:`decode_rgb` for what a header shows (``empty``,
    ``not_an_image``, ``unsupported_format``, ``needs_extra``, ``too_large``, ``corrupt``);
    nothing is decoded.
    """
    with _checked_image(f, path, max_pixels) as im:
        w, h = im.size
        orientation = _orientation(im)
        if orientation in SWAPS:
            h, w = w, h
        return h, w, im.mode, im.format or "", orientation
