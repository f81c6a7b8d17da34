"""Decoding image files in TensorFlow graphs: the pipeline's one decoder, DCT-domain downscaling,
and the tf.data threading every input pipeline uses.

A 3000x2250 JPEG costs far more to decode and resize than the 224x224 the model sees of it.
libjpeg can skip part of that work: ``decode_jpeg(ratio=r)`` (r in 1, 2, 4, 8) runs the inverse
DCT at 1/r of the size, and the antialiased resize that follows then reads r*r times fewer
pixels. :func:`jpeg_ratio` picks the largest r that still leaves the decoded image at least
``need`` pixels high and wide.

``need`` per use (:func:`decode_need`):

* evaluation, prediction, extraction and serving (the whole image resized to the target):
  ``PARITY_MARGIN`` (4) times the target. Measured on the bundled photos upscaled to
  3000x2250 (JPEG q90, 224x224 target): r=2 (decoded 1125x1500, 5x the target) is within
  0.05 levels of 255 on average (at most 1.3) of the full decode, inside the parity tests'
  tolerance (mean < 0.3, max <= 2); r=4 (2.5x) is 0.5 to 1.0 on average with edges off by
  up to 35 levels (the scaled IDCT is not the resize's triangle filter), which is not.
* training crops: the target divided by the smallest crop side a random resized crop can
  take (area 0.25 at aspect 4/3: 0.43 of a side), and for VGG scale jitter its largest
  shorter side (512/224 of the target): even the smallest crop is still cut at the target's
  resolution or more, so the final resize still downsamples. Augmented pixels are random
  and no parity test holds them; the saving is larger there (r=4 for a 3000x2250 photo).
"""

from __future__ import annotations

import math
import os
from typing import Any

# Bump when decode_file gives other pixels for the same file (2: EXIF orientation applied, WebP
# read): tlkit.data.cache names its files by it, so no cache of older pixels is served.
DECODER_VERSION = 2
RATIOS = (8, 4, 2, 1)  # the scales libjpeg's IDCT offers, largest first
PARITY_MARGIN = 4  # decoded side / target side at least this for a plain resize (see the module doc)


def decode_need(size: tuple[int, int], augment: str | None = None) -> tuple[int, int]:
    """The smallest decoded (height, width) that keeps the later resize a downscale.

    ``augment`` is the training augmentation (``"crop"``, ``"scale"``) or None for a plain
    resize of the whole image to ``size`` (then ``PARITY_MARGIN`` times ``size``: the pixels
    stay within the parity tolerance of a full decode).
    """
    from tlkit.data import resize as rs

    h, w = int(size[0]), int(size[1])
    if augment == "crop":
        # The smallest crop side is sqrt(min area / max aspect) of the image side.
        frac = math.sqrt(rs.CROP_SCALE[0] / rs.CROP_RATIO[1])
        return math.ceil(h / frac), math.ceil(w / frac)
    if augment == "scale":
        s_max = math.floor(max(h, w) * rs.VGG_SCALE[1])  # the shorter side is scaled to at most this
        return s_max, s_max
    return PARITY_MARGIN * h, PARITY_MARGIN * w


def serving_need(size: tuple[int, int], resize: str) -> tuple[int, int] | None:
    """:func:`decode_need` for the serving graph's resize modes (``tlkit.export.serving_decode``).

    None (decode in full) for ``crop``: its centre square is rounded to whole pixels of the
    decoded image, so at 1/r of the size its edges move by up to r/2 pixels of the original,
    and on the bundled 3000x2250 photos that changed edge pixels by up to 26 levels (mean
    under 0.3, but the parity tests allow 2 at most). ``plain`` and ``dataset`` resize the
    whole image and take the short cut.
    """
    if resize == "crop":
        return None
    return decode_need(size)


def jpeg_ratio(height: Any, width: Any, need: tuple[int, int]) -> Any:
    """The largest libjpeg scale r (8, 4, 2, 1) with ceil(height / r) >= need[0] and ceil(width / r) >= need[1].

    Works on Python ints and on int tensors (then returns an int32 tensor).
    """
    import tensorflow as tf

    h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    out = tf.constant(1, tf.int32)
    for r in reversed(RATIOS[:-1]):  # 2, 4, 8: each later one that fits wins
        fits = tf.logical_and((h + r - 1) // r >= need[0], (w + r - 1) // r >= need[1])
        out = tf.where(fits, tf.constant(r, tf.int32), out)
    return out


def decode_jpeg_scaled(data: Any, need: tuple[int, int] | None) -> Any:
    """Decode JPEG bytes to upright uint8 [h, w, 3], at 1/r of the size where ``need`` allows (see :func:`jpeg_ratio`).

    libjpeg's accurate integer IDCT at every scale: the pixels PIL (and so ``tlkit predict``) gives.
    The EXIF orientation is read from the bytes and applied (:mod:`tlkit.data.orientation`),
    so ``need`` is a need of the upright image: for orientations 5..8 the stored image's
    width becomes the height.
    """
    import tensorflow as tf

    from tlkit.data.orientation import tf_jpeg_orientation, tf_upright

    def at(r: int) -> Any:
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")

    orientation = tf_jpeg_orientation(data)
    if need is None:
        return tf_upright(at(1)(), orientation)
    shape = tf.io.extract_jpeg_shape(data)
    turned = orientation >= 5  # the upright height is the stored width
    r = jpeg_ratio(tf.where(turned, shape[1], shape[0]), tf.where(turned, shape[0], shape[1]), need)
    # ratio is an attribute of the op, not an input: one branch per scale.
    index = tf.cast(tf.math.log(tf.cast(r, tf.float32)) / math.log(2.0) + 0.5, tf.int32)
    return tf_upright(tf.switch_case(index, [at(1), at(2), at(4), at(8)]), orientation)


def is_webp(data: Any) -> Any:
    """True (a bool tensor) for WebP bytes: ``RIFF`` .... ``WEBP``."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([data, b"\0" * 12]), 0, 12)
    return tf.equal(tf.strings.substr(head, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")


def decode_webp_rgb(data: Any) -> Any:
    """WebP bytes to uint8 [h, w, 3]: the first frame, alpha dropped (PIL's ``convert("RGB")``, pixel for pixel).

    ``tf.io.decode_image(channels=3)`` refuses a WebP with alpha (and any animated one):
    ``decode_webp`` with the file's own channel count reads them all.
    """
    import tensorflow as tf

    return tf.ensure_shape(tf.io.decode_webp(data)[0][..., :3], [None, None, 3])


def decode_native(data: Any) -> Any:
    """PNG, GIF (first frame), WebP (first frame) or BMP bytes to uint8 [h, w, 3] with TensorFlow's decoders."""
    import tensorflow as tf

    return tf.cond(
        is_webp(data),
        lambda: decode_webp_rgb(data),
        lambda: tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), [None, None, 3]),
    )


def _is_pil_only(data: Any) -> Any:
    """True for bytes TensorFlow cannot decode right: BMP (1-bit, palette) and ISO-BMFF images (HEIC/HEIF, AVIF)."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([data, b"\0" * 8]), 0, 8)  # padded: substr refuses a start past the end
    return tf.logical_or(
        tf.equal(tf.strings.substr(head, 0, 2), b"BM"), tf.equal(tf.strings.substr(head, 4, 4), b"ftyp")
    )


def decode_file(path: Any, need: tuple[int, int] | None = None) -> Any:
    """Read and decode one file to upright uint8 (H, W, 3) in the graph; BMP, HEIC/HEIF and AVIF go through PIL.

    A JPEG is decoded at a DCT scale that keeps at least ``need`` (height, width) pixels
    (None: full size) and turned upright by its EXIF orientation. PNG, GIF and WebP use
    ``tf.io.decode_image``. TensorFlow's BMP decoder rejects 1-bit files and reads 8-bit
    palette BMPs as gray (wrong colours, no error), and it has no HEIF or AVIF decoder, so
    those use :func:`tlkit.data.images.load_rgb` like the preflight.
    """
    import numpy as np
    import tensorflow as tf

    data = tf.io.read_file(path)

    def pil() -> Any:
        def load(p: bytes) -> np.ndarray:
            from tlkit.data.images import load_rgb

            return load_rgb((p.item() if isinstance(p, np.ndarray) else p).decode())  # a 0-d array when eager

        return tf.ensure_shape(tf.numpy_function(load, [path], tf.uint8, stateful=False), [None, None, 3])

    return _decode_data(data, need, pil)


def decode_bytes(data: Any, need: tuple[int, int] | None = None) -> Any:
    """:func:`decode_file` of a file's bytes already read (objects on a bucket: :mod:`tlkit.data.remote_read`)."""
    import numpy as np
    import tensorflow as tf

    def pil() -> Any:
        def load(d: bytes) -> np.ndarray:
            import io

            from tlkit.data.images import decode_rgb

            raw = d.item() if isinstance(d, np.ndarray) else d
            return decode_rgb(io.BytesIO(raw), "object")[0]

        return tf.ensure_shape(tf.numpy_function(load, [data], tf.uint8, stateful=False), [None, None, 3])

    return _decode_data(data, need, pil)


def _decode_data(data: Any, need: tuple[int, int] | None, pil: Any) -> Any:
    """Bytes to upright uint8 (H, W, 3): JPEG at a DCT scale, PNG/GIF/WebP by TensorFlow, ``pil()`` for the rest."""
    import tensorflow as tf

    is_jpeg = tf.strings.substr(data, 0, 3) == b"\xff\xd8\xff"
    img = tf.cond(
        _is_pil_only(data),
        pil,
        lambda: tf.cond(is_jpeg, lambda: decode_jpeg_scaled(data, need), lambda: decode_native(data)),
    )
    img.set_shape([None, None, 3])
    return img


def with_threading(ds: Any) -> Any:
    """``ds`` with the threading every tlkit input pipeline uses (pixels are unchanged).

    On a small CPU, tf.data and the network share the same cores: left alone, each decode
    op may itself spread over the intra-op pool while tf.data runs many decodes at once, and
    both pools then fight the model's matrix multiplications for the same cores. So each
    decode runs on one thread (``max_intra_op_parallelism = 1``: the parallelism comes from
    running several files at once, which scales without locks), on tf.data's own pool sized
    to the cores (``private_threadpool_size``), so the network's inter-op pool is never
    starved by queued decodes. How many files run at once and how far ahead to prefetch stay
    AUTOTUNE: the right depth depends on the model's speed, which only the run knows.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
    return ds.with_options(options)
