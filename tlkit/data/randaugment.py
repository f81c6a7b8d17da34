"""RandAugment (``--randaugment N,M``) with stateless TensorFlow ops, on raw 0..255 float pixels.

Each training image gets ``N`` ops drawn uniformly, with replacement, from the standard list
(:data:`OPS`: identity, autocontrast, equalize, rotate, solarize, color, posterize, contrast,
brightness, sharpness, shear x/y, translate x/y), each at magnitude ``M``. ``M`` is on
torchvision's scale, ``RandAugment(num_ops=N, magnitude=M)`` with its default 31 bins (0..30),
with the same maxima at ``M = 30``: rotate 30 degrees, shear 0.3, translate 150/331 of the side,
brightness/color/contrast/sharpness factors 1 +- 0.9, posterize to 4 bits, solarize threshold 0;
the signed ops (geometric and enhance) take a random sign. timm's ``rand-mK-nN`` counts K on a
0..10 scale, so its fraction of the maximum is K/10: timm's ``rand-m9-n2`` is ``--randaugment 2,27``
here, torchvision's ``magnitude=9`` is ``--randaugment 2,9``. At ``M = 0`` every op other than
autocontrast and equalize (which have no magnitude) returns its input.

Randomness is a pure function of the element's seed (:func:`tlkit.data.augment.augment_image`
derives it from the per-element stateless seed of :mod:`tlkit.data.pipeline`, itself a function of
(seed, epoch, position)), so a resumed run replays each epoch bit for bit, whatever the parallelism.

Why not ``keras.layers.RandAugment`` (Keras 3.15)? It cannot be driven by a per-element seed and
its magnitudes do not fit this scale:

* ``RandAugment.get_random_transformation(data, seed=...)`` ignores ``seed``: the op choice and
  every sub-layer's draw come from the layer's own ``SeedGenerator``, a variable advanced on each
  call. In a parallel ``tf.data`` map the draws depend on execution order, and two iterations of the
  same dataset give different images (measured): not a function of (seed, epoch, element).
  Resetting that variable per element inside the map would race between parallel elements.
* ``factor`` is an upper bound of a *random* magnitude, one-sided: ``factor=0.3`` rotates by 0..108
  degrees (factor times 360), translates by 0..0.3 of the side. Posterize and solarize get
  *stronger* as the factor falls: posterize keeps ``max(1, int(8 * factor))`` bits at most (1 bit
  at ``factor=0.3``) and solarize inverts pixels above a threshold drawn in 0..factor*255 (nearly
  the whole image at small factors). There is no identity op, shear and translate move both axes
  at once, and every one of the 11 sub-layers runs for each of the N ops (``numpy.where`` picks one).

So the ops here are TensorFlow's stateless ones and PIL's definitions (as torchvision and timm
use them), chosen per op with ``tf.switch_case`` so only the drawn op runs. Differences from
torchvision: geometric ops fill with grey 128 (timm's choice; torchvision fills black) and
interpolate bilinearly; solarize inverts pixels strictly above its threshold, so ``M = 0`` leaves
white pixels white.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

OPS = (
    "identity",
    "autocontrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
MAX_MAGNITUDE = 30
FILL = 128.0


def _blend(degenerate: Any, image: Any, factor: Any) -> Any:
    """PIL's ImageEnhance: ``degenerate + factor * (image - degenerate)``, clipped to 0..255."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _gray(image: Any) -> Any:
    return tf.image.rgb_to_grayscale(image)


def _sharpen_degenerate(image: Any) -> Any:
    """PIL's SMOOTH kernel ([[1,1,1],[1,5,1],[1,1,1]] / 13) inside, the border pixels kept."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    inner = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    mask = tf.pad(tf.ones([h - 2, w - 2, 3]), [[1, 1], [1, 1], [0, 0]])
    return mask * inner + (1.0 - mask) * image


def _autocontrast(image: Any) -> Any:
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scaled = (image - lo) * 255.0 / tf.maximum(hi - lo, 1e-6)
    return tf.where(hi > lo, scaled, image)


def _equalize_channel(channel: Any) -> Any:
    """PIL's ImageOps.equalize of one channel (rounded to 0..255 first)."""
    values = tf.cast(tf.clip_by_value(tf.round(channel), 0.0, 255.0), tf.int32)
    hist = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
    nonzero = tf.gather(hist, tf.where(hist > 0)[:, 0])
    step = (tf.reduce_sum(hist) - nonzero[-1]) // 255
    safe = tf.maximum(step, 1)
    lut = tf.minimum((tf.cumsum(hist, exclusive=True) + safe // 2) // safe, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), tf.float32), channel)


def _equalize(image: Any) -> Any:
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _transform(image: Any, matrix: Any) -> Any:
    """Sample the output pixel (x, y) at ``matrix`` (a0 a1 a2 b0 b1 b2) applied to it; grey outside."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    transforms = tf.concat([tf.cast(tf.stack(matrix), tf.float32), tf.zeros([2], tf.float32)], 0)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transforms,
        output_shape=tf.stack([h, w]),
        fill_value=FILL,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[0]


def _rotate(image: Any, degrees: Any) -> Any:
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    t = degrees * math.pi / 180.0
    c, s = tf.cos(t), tf.sin(t)
    return _transform(image, [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy])


def _op_branches(image: Any, m: float, sign: Any) -> list[Any]:
    """One zero-argument function per op of :data:`OPS`, at magnitude ``m`` (0..1 of the maximum)."""
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    enhance = 1.0 + sign * 0.9 * m
    shear = sign * 0.3 * m
    bits = 8 - int(round(4 * m))
    threshold = 255.0 * (1.0 - m)
    one, zero = tf.constant(1.0), tf.constant(0.0)

    def posterize() -> Any:
        if bits == 8:
            return image
        q = float(2 ** (8 - bits))
        return tf.floor(tf.clip_by_value(image, 0.0, 255.0) / q) * q

    table = {
        "identity": lambda: image,
        "autocontrast": lambda: _autocontrast(image),
        "equalize": lambda: _equalize(image),
        "rotate": lambda: _rotate(image, sign * 30.0 * m),
        "solarize": lambda: tf.where(image > threshold, 255.0 - image, image),
        "color": lambda: _blend(_gray(image), image, enhance),
        "posterize": posterize,
        "contrast": lambda: _blend(tf.reduce_mean(_gray(image)), image, enhance),
        "brightness": lambda: _blend(tf.zeros_like(image), image, enhance),
        "sharpness": lambda: _blend(_sharpen_degenerate(image), image, enhance),
        "shear_x": lambda: _transform(image, [one, shear, zero, zero, one, zero]),
        "shear_y": lambda: _transform(image, [one, zero, zero, shear, one, zero]),
        "translate_x": lambda: _transform(image, [one, zero, sign * m * 150.0 / 331.0 * w, zero, one, zero]),
        "translate_y": lambda: _transform(image, [one, zero, zero, zero, one, sign * m * 150.0 / 331.0 * h]),
    }
    return [table[name] for name in OPS]


def rand_augment(image: Any, seed: Any, num_ops: int, magnitude: float, *, ops: tuple[str, ...] = OPS) -> Any:
    """``num_ops`` ops of ``ops`` (uniform, with replacement) at ``magnitude`` (0..30) on one image.

    ``image``: float (H, W, 3) in 0..255; ``seed``: int tensor of shape [2]. Returns float32
    (H, W, 3) in 0..255, the same for the same seed.
    """
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise ValueError(f"unknown RandAugment ops {unknown}; use some of {', '.join(OPS)}")
    m = float(magnitude) / MAX_MAGNITUDE
    allowed = tf.constant([OPS.index(o) for o in ops], tf.int32)
    x = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0)
    shape = x.shape
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2 * int(num_ops))
    for i in range(int(num_ops)):
        pick = tf.random.stateless_uniform([], seeds[2 * i], 0, len(ops), dtype=tf.int32)
        flip = tf.random.stateless_uniform([], seeds[2 * i + 1])
        sign = tf.where(flip < 0.5, -1.0, 1.0)
        x = tf.switch_case(tf.gather(allowed, pick), _op_branches(x, m, sign))
        x = tf.clip_by_value(x, 0.0, 255.0)
        x.set_shape(shape)
    return x
