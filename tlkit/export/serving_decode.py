"""In-graph decoding for the serving signature: headers checked before any pixel is allocated.

:func:`decode_images` is what ``serving_default`` runs on ``image_bytes`` (tf.string [B]).
It works in three steps, each in the graph (plain TensorFlow ops, no tlkit at load time):

1. **Headers** (:mod:`tlkit.export.serving_headers`; string and integer ops only, nothing
   there can fail): the format from the signature bytes, the image size from the header.
2. **Refusal**: the request fails, before anything is decoded, when it holds no images,
   or an image is no JPEG/PNG/WebP/BMP/GIF, has a header without a usable size, or has more
   pixels than ``max_pixels`` (``tlkit export --max-pixels``; default
   :data:`tlkit.data.images.MAX_PIXELS`, the limit ``tlkit predict`` applies). HEIC/HEIF
   and AVIF images (TensorFlow has no decoder for them) and animated WebP are refused by
   name: clients send JPEG, PNG, WebP, BMP or GIF.
3. **Decoding** in a ``tf.data`` pipeline with ``ignore_errors``: an image the decoder
   rejects (truncated or damaged data) is dropped there instead of failing with the
   decoder's own text, and the request then fails naming it. A JPEG is turned upright by
   its EXIF orientation (:mod:`tlkit.data.orientation`, read from the bytes in the graph),
   as every tlkit command decodes it. Each decoded image is resized
   by :func:`tlkit.data.resize.apply` (policy ``crop`` or ``plain``), the function every
   tlkit command resizes with, so a served image reaches the model as the same pixels.

Every refusal is an ``InvalidArgumentError`` whose text contains one line
``tlkit serving: image_bytes[i] ...`` (see :func:`error_line`): it names the image's index
in the batch, what is wrong and, for the size limit, the limit and the flag that sets it.
A refused request changes nothing; the next request is served as usual.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tlkit.data import resize as rs
from tlkit.data.images import MAX_PIXELS
from tlkit.export.serving_headers import (  # noqa: F401  (format and problem codes re-exported)
    AVIF,
    BAD_HEADER,
    BMP,
    FORMAT_NAMES,
    GIF,
    HEIF,
    JPEG,
    NOT_IMAGE,
    OK,
    PNG,
    TOO_LARGE,
    UNSUPPORTED,
    WEBP,
    header_info,
)

BYTES_INPUT = "image_bytes"
RESIZE_MODES = rs.POLICIES  # "crop" | "plain": tlkit.data.resize, as every command resizes
PREFIX = "tlkit serving: "
BAD_IMAGE_MESSAGE = "is not a JPEG, PNG, WebP, BMP or GIF image"
UNSUPPORTED_MESSAGE = (
    "which the serving graph cannot decode: send JPEG, PNG, WebP, BMP or GIF (convert it on the client)"
)
EMPTY_REQUEST_MESSAGE = "the request holds no images"
TOO_LARGE_MESSAGE = "pixels, more than the limit of"
UNDECODABLE_MESSAGE = "could not be decoded"
MAX_PIXELS_FLAG = "tlkit export --max-pixels"


def _text(*parts: Any) -> tf.Tensor:
    """Join literal strings and scalar tensors (integers written in full) into one string."""
    return tf.strings.join(
        [
            p
            if isinstance(p, str) or p.dtype == tf.string
            else tf.strings.as_string(p, precision=0)
            if p.dtype.is_floating
            else tf.strings.as_string(p)
            for p in parts
        ]
    )


def _problem_message(i: tf.Tensor, info: dict[str, tf.Tensor], n_bytes: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """The refusal line for image ``i`` whose header step found a problem."""
    name = tf.gather(tf.constant(FORMAT_NAMES), info["format"])
    frames = tf.where(info["frames"] > 1, _text(" x ", info["frames"], " frames"), "")
    where = PREFIX + BYTES_INPUT + "["
    messages = tf.stack(
        [
            tf.constant(""),
            _text(where, i, "] " + BAD_IMAGE_MESSAGE + " (", n_bytes, " bytes)"),
            _text(
                where,
                i,
                "] is a damaged or truncated ",
                name,
                " file: its header gives no image size (",
                n_bytes,
                " bytes)",
            ),
            _text(
                where,
                i,
                "] is a ",
                name,
                " of ",
                info["width"],
                "x",
                info["height"],
                frames,
                " = ",
                info["pixels"],
                " " + TOO_LARGE_MESSAGE + f" {max_pixels} set at export ({MAX_PIXELS_FLAG}); it was not decoded",
            ),
            _text(
                where,
                i,
                "] is ",
                tf.where(
                    tf.equal(info["format"], WEBP), "an animated WebP", _text("an image in the ", name, " format")
                ),
                ", " + UNSUPPORTED_MESSAGE,
            ),
        ]
    )
    return tf.gather(messages, info["problem"])


def _decode_one(data: tf.Tensor, need: tuple[int, int] | None = None) -> tf.Tensor:
    from tlkit.data.decode import decode_jpeg_scaled, decode_native

    image = tf.cond(
        tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff"),
        # libjpeg's accurate integer IDCT, as PIL and tlkit's data pipeline decode:
        # decode_image's default (fast IDCT) differs by up to ~10 levels. At a DCT
        # scale where the photo is large enough (tlkit.data.decode.serving_need), and
        # turned upright by its EXIF orientation.
        lambda: decode_jpeg_scaled(data, need),
        # GIFs give their first frame; grayscale and RGBA become RGB (alpha dropped); WebP too.
        lambda: decode_native(data),
    )
    return tf.ensure_shape(image, [None, None, 3])


def decode_images(
    image_bytes: tf.Tensor, size: tuple[int, int], resize: str = "crop", max_pixels: int = MAX_PIXELS
) -> tf.Tensor:
    """Encoded images (tf.string [B]) -> float32 pixels [B, H, W, 3], 0..255; see the module doc.

    The exact function the ``serving_default`` signature runs, so callers can reproduce the
    pixels a request was classified on. Raises ``InvalidArgumentError`` with a
    ``tlkit serving: ...`` line for an empty request, bytes of no supported format, a header
    without a size, more than ``max_pixels`` pixels, or data the decoder rejects.
    """
    size = (int(size[0]), int(size[1]))
    max_pixels = int(max_pixels)
    rs.check_policy(resize)
    image_bytes = tf.reshape(tf.convert_to_tensor(image_bytes, dtype=tf.string), [-1])
    n = tf.shape(image_bytes, out_type=tf.int64)[0]

    not_empty = tf.debugging.Assert(
        n > 0, [PREFIX + EMPTY_REQUEST_MESSAGE + f" ({BYTES_INPUT} is empty); send one or more encoded images"]
    )
    with tf.control_dependencies([not_empty]):
        image_bytes = tf.identity(image_bytes)

    spec = {
        k: tf.TensorSpec([], tf.float64 if k == "pixels" else tf.int64)
        for k in ("format", "problem", "height", "width", "frames", "pixels")
    }
    info = tf.map_fn(lambda d: header_info(d, max_pixels), image_bytes, fn_output_signature=spec)
    bad = tf.not_equal(info["problem"], OK)
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int64)
    first_info = {k: tf.gather(v, first) for k, v in info.items()}
    refusal = tf.cond(
        tf.reduce_any(bad),
        lambda: _problem_message(first, first_info, tf.strings.length(tf.gather(image_bytes, first)), max_pixels),
        lambda: tf.constant(""),
    )
    headers_ok = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [refusal], summarize=1)
    with tf.control_dependencies([headers_ok]):  # nothing is decoded before every header passed
        image_bytes = tf.identity(image_bytes)

    # Decoder failures cannot be caught by graph ops; tf.data can drop the failing element.
    index = tf.range(n)
    from tlkit.data.decode import serving_need

    need = serving_need(size, resize)
    # In parallel (the results are scattered back by index, so their order does not matter).
    dataset = tf.data.Dataset.from_tensor_slices((index, image_bytes)).map(
        lambda i, d: (i, rs.apply(_decode_one(d, need), size, resize)), num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = dataset.ignore_errors()
    # A sentinel (index -1) keeps the batch non-empty when every image failed.
    sentinel = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.zeros([*size, 3], tf.float32)))
    got, pixels = dataset.concatenate(sentinel).batch(n + 1).get_single_element()
    got, pixels = got[:-1], pixels[:-1]
    decoded = tf.scatter_nd(got[:, None], tf.ones_like(got, tf.int32), [n]) > 0
    failed = tf.argmax(tf.cast(~decoded, tf.int32), output_type=tf.int64)
    name = tf.gather(tf.constant(FORMAT_NAMES), tf.gather(info["format"], failed))
    message = _text(
        PREFIX + BYTES_INPUT + "[",
        failed,
        "] " + UNDECODABLE_MESSAGE + ": damaged or truncated ",
        name,
        " data (",
        tf.strings.length(tf.gather(image_bytes, failed)),
        " bytes)",
    )
    all_decoded = tf.debugging.Assert(tf.reduce_all(decoded), [message], summarize=1)
    with tf.control_dependencies([all_decoded]):
        out = tf.scatter_nd(got[:, None], pixels, [n, *size, 3])
    return tf.ensure_shape(out, [None, *size, 3])


def error_line(message: str | None) -> str | None:
    """The ``tlkit serving: ...`` text of a TensorFlow error (else its last line), on one line.

    TensorFlow wraps an assertion as ``assertion failed: [TEXT]`` followed by node names.
    """
    if not message:
        return None
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    hit = next((ln for ln in lines if PREFIX in ln), None)
    if hit is None:
        return lines[-1][:300] if lines else ""
    hit = hit[hit.index(PREFIX) :]
    return hit.removesuffix("]")
