"""THE resize module: every pixel a tlkit model sees was resized here (TensorFlow ops).

One interpolation for every inference policy: **bilinear with antialiasing, unrounded**,
the interpolation training uses. Training, evaluation, ``tlkit predict``, feature
extraction, dense evaluation, ``tlkit advise`` and the exported serving graph therefore
feed a model the same float pixels for the same image and policy: a model is served on
the pixels it was validated on (no train/serve skew from a second resampler). Antialiasing
matters for downscaling (a photo to 224x224): without it, bilinear samples 4 pixels per
output and aliases fine texture. Results are left unrounded, as the data pipeline
always did; the triangle filter has no negative lobes, so values stay within 0..255.

Inference policies (:data:`POLICIES`, the values of ``--resize``):

* ``"crop"``: :func:`centre_crop`, the centre square of 87.5% of the shorter side
  (:data:`~tlkit.data.images.CROP_FRACTION`, the published ImageNet evaluation crop),
  then resized to the model's size. ``tlkit predict``'s default and an ImageNet export's.
* ``"plain"``: :func:`plain`, the whole image resized (aspect not kept). What finetuning
  validates and ``tlkit evaluate`` measures on, hence a run export's default.

Dense evaluation scales (:data:`SCALE_MODES`): :func:`to_scale` with ``"shorter"`` (shorter
side to the scale, aspect kept) or ``"square"`` (scale x scale, i.e. ``plain``).

Training crops (seeded, stateless): :func:`random_resized_crop` and VGG's
:func:`scale_jitter`; :mod:`tlkit.data.augment` adds flips and colour on top.

Every function takes an image tensor (or array) ``[H, W, C]`` of 0..255 values and returns
float32; numpy callers call them eagerly (:func:`resize_numpy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.data.images import CROP_FRACTION
from tlkit.errors import ConfigError

METHOD = "bilinear"  # the one interpolation (antialiased); see the module docstring
POLICIES = ("crop", "plain")
SCALE_MODES = ("shorter", "square")
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
VGG_SCALE = (256 / 224, 512 / 224)  # S range relative to the crop side


def resize(image: Any, size: tuple[int, int]) -> tf.Tensor:
    """``image`` resized to ``size`` (H, W) as float32: antialiased bilinear, unrounded."""
    out = tf.image.resize(tf.cast(image, tf.float32), (int(size[0]), int(size[1])), method=METHOD, antialias=True)
    return tf.ensure_shape(out, [size[0], size[1], None])


def plain(image: Any, size: tuple[int, int]) -> tf.Tensor:
    """The ``plain`` policy: the whole image resized to ``size``."""
    return resize(image, size)


def centre_crop(image: Any, size: tuple[int, int], fraction: float = CROP_FRACTION) -> tf.Tensor:
    """The ``crop`` policy: the centre square of ``fraction`` of the shorter side, resized to ``size``."""
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.maximum(1, tf.cast(tf.round(tf.cast(tf.minimum(h, w), tf.float64) * fraction), tf.int32))
    top, left = (h - side) // 2, (w - side) // 2
    return resize(image[top : top + side, left : left + side, :], size)


def apply(image: Any, size: tuple[int, int], policy: str = "crop") -> tf.Tensor:
    """``image`` at ``size`` under an inference ``policy`` (:data:`POLICIES`)."""
    if policy == "crop":
        return centre_crop(image, size)
    if policy == "plain":
        return plain(image, size)
    raise ConfigError(f"resize policy {policy!r} is not one of {', '.join(POLICIES)} (--resize)")


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`POLICIES`, else a ConfigError naming ``--resize``."""
    if policy not in POLICIES:
        raise ConfigError(f"resize policy {policy!r} is not one of {', '.join(POLICIES)} (--resize)")
    return policy


def scaled_size(height: int, width: int, scale: int, mode: str = "shorter") -> tuple[int, int]:
    """The size an image of ``height`` x ``width`` gets at a dense ``scale``."""
    if mode not in SCALE_MODES:
        raise ConfigError(f"resize must be one of {SCALE_MODES}, got {mode!r}")
    h, w = int(height), int(width)
    if mode == "square":
        return int(scale), int(scale)
    if h <= w:
        return int(scale), max(1, round(w * scale / h))
    return max(1, round(h * scale / w)), int(scale)


def to_scale(image: Any, scale: int, mode: str = "shorter") -> tf.Tensor:
    """Dense evaluation: shorter side to ``scale`` (aspect kept) or ``scale`` x ``scale``."""
    image = tf.convert_to_tensor(image)
    h, w = (int(v) for v in image.shape[:2])
    return resize(image, scaled_size(h, w, scale, mode))


def to_shorter(image: Any, side: int) -> tf.Tensor:
    """``image`` resized in the graph so that its shorter side is ``side`` (aspect kept, as
    :func:`scaled_size` rounds); for images whose size is only known when the graph runs."""
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    h, w = shape[0], shape[1]
    s = tf.constant(float(side), tf.float64)
    long_h = tf.maximum(tf.round(h * s / w), 1.0)
    long_w = tf.maximum(tf.round(w * s / h), 1.0)
    hw = tf.cond(h <= w, lambda: tf.stack([s, long_w]), lambda: tf.stack([long_h, s]))
    return tf.image.resize(tf.cast(image, tf.float32), tf.cast(hw, tf.int32), method=METHOD, antialias=True)


def resize_numpy(image: np.ndarray, size: tuple[int, int], policy: str = "plain") -> np.ndarray:
    """:func:`apply` run eagerly on a numpy image; float32 numpy out."""
    return apply(tf.constant(np.asarray(image)), size, policy).numpy()


# --- training crops ------------------------------------------------------------------------------


def random_resized_crop(
    image: Any,
    size: tuple[int, int],
    seed: Any,
    *,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> tf.Tensor:
    """Crop a random box (area fraction in ``scale``, aspect in ``ratio``) and resize it to ``size``."""
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=scale[0],
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return resize(tf.slice(image, begin, box), size)


def scale_jitter(
    image: Any, size: tuple[int, int], seed: Any, *, scale_range: tuple[float, float] = VGG_SCALE
) -> tf.Tensor:
    """VGG scale jitter: shorter side to a random S, then a random ``size`` crop."""
    h_t, w_t = size
    side = max(h_t, w_t)
    s_min = math.ceil(side * scale_range[0])
    s_max = max(s_min, math.floor(side * scale_range[1]))
    s_seed, c_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    s = tf.random.stateless_uniform([], s_seed, minval=s_min, maxval=s_max + 1, dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.cast(s, tf.float32) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.math.ceil(shape * factor), tf.int32), tf.constant([h_t, w_t]))
    big = tf.image.resize(tf.cast(image, tf.float32), new, method=METHOD, antialias=True)
    return tf.image.stateless_random_crop(big, [h_t, w_t, 3], c_seed)
