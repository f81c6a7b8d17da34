"""Seeded data augmentation for the tf.data pipeline (TensorFlow ops, raw 0..255 float pixels).

Every random op is *stateless*: it takes an explicit seed of shape ``[2]``, which
:func:`tlkit.data.pipeline.make_dataset` derives per element from the run's seed and a per-epoch
random stream. The same seed therefore gives the same augmented images, whatever the
parallelism, and each epoch still sees new crops.

Defaults, and why:

* ``random_resized_crop`` uses area scale (0.25, 1) rather than Inception's (0.08, 1).
  (0.08, 1) was tuned for 90+ epochs from scratch on ImageNet; finetuning runs for a few
  epochs on small sets, where crops of 8% of the area often cut the object out and the
  low-resolution builtins (8x8 digits, 25x25 faces) keep almost nothing.
* ``scale_jitter`` is VGG's: shorter side to S uniform in [256, 512] for a 224 crop, scaled
  to the target size, then a random crop; aspect ratio is kept.
* Colour jitter is mild (brightness, contrast and saturation factors in [0.8, 1.2]):
  pretrained features are colour-sensitive and the labels rarely depend on colour shifts
  larger than that.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from tlkit.errors import ConfigError

AUGMENTATIONS = ("crop", "scale")
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
VGG_SCALE = (256 / 224, 512 / 224)  # S range relative to the crop side


def resize(image: Any, size: tuple[int, int]) -> Any:
    """Resize to ``size`` (H, W) as float32; antialiased so downscaling does not alias."""
    out = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return tf.ensure_shape(out, [size[0], size[1], None])


def random_resized_crop(image: Any, size: tuple[int, int], seed: Any, *,
                        scale: tuple[float, float] = CROP_SCALE,
                        ratio: tuple[float, float] = CROP_RATIO) -> Any:
    """Crop a random box (area fraction in ``scale``, aspect in ``ratio``) and resize it to ``size``."""
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=scale[0], aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return resize(tf.slice(image, begin, box), size)


def scale_jitter(image: Any, size: tuple[int, int], seed: Any, *,
                 scale_range: tuple[float, float] = VGG_SCALE) -> Any:
    """VGG scale jitter: shorter side to a random S, then a random ``size`` crop."""
    h_t, w_t = size
    side = max(h_t, w_t)
    s_min = int(math.ceil(side * scale_range[0]))
    s_max = max(s_min, int(math.floor(side * scale_range[1])))
    s_seed, c_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    s = tf.random.stateless_uniform([], s_seed, minval=s_min, maxval=s_max + 1, dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.cast(s, tf.float32) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.math.ceil(shape * factor), tf.int32), tf.constant([h_t, w_t]))
    big = tf.image.resize(tf.cast(image, tf.float32), new, method="bilinear", antialias=True)
    return tf.image.stateless_random_crop(big, [h_t, w_t, 3], c_seed)


def random_flip(image: Any, seed: Any) -> Any:
    """Mirror left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def color_jitter(image: Any, seed: Any, *, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2) -> Any:
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]``; stays in 0..255."""
    b_seed, c_seed, s_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    x = tf.cast(image, tf.float32) / 255.0
    if brightness:
        x = x * tf.random.stateless_uniform([], b_seed, 1 - brightness, 1 + brightness)
    if contrast:
        x = tf.image.stateless_random_contrast(x, 1 - contrast, 1 + contrast, c_seed)
    if saturation:
        x = tf.image.stateless_random_saturation(tf.clip_by_value(x, 0.0, 1.0), 1 - saturation,
                                                 1 + saturation, s_seed)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def augment_image(image: Any, size: tuple[int, int], seed: Any, *, mode: str = "crop", flip: bool = True,
                  color: bool = True) -> Any:
    """The training augmentation of one image: crop or scale jitter, then flip and colour jitter.

    ``seed`` is an int tensor of shape [2]; the output is float32 (H, W, 3) in 0..255.
    """
    if mode not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {mode!r}; use one of {', '.join(AUGMENTATIONS)}")
    seed = tf.cast(seed, tf.int64)
    g_seed, f_seed, c_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if mode == "crop":
        x = random_resized_crop(image, size, g_seed)
    else:
        x = scale_jitter(image, size, g_seed)
    if flip:
        x = random_flip(x, f_seed)
    if color:
        x = color_jitter(x, c_seed)
    return tf.ensure_shape(tf.cast(x, tf.float32), [size[0], size[1], 3])
