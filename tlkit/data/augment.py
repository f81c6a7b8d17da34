"""Seeded data augmentation for the tf.data pipeline (TensorFlow ops, raw 0..255 float pixels).

The geometric crops (random resized crop, VGG scale jitter) live in :mod:`tlkit.data.resize`
with every other resize, so training and inference share one interpolation; this module adds
the flips and colour jitter and chooses the crop.

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

from typing import Any

import tensorflow as tf

from tlkit.data.resize import random_resized_crop, scale_jitter
from tlkit.errors import ConfigError

AUGMENTATIONS = ("crop", "scale")


def random_flip(image: Any, seed: Any) -> Any:
    """Mirror left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def color_jitter(
    image: Any, seed: Any, *, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2
) -> Any:
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]``; stays in 0..255."""
    b_seed, c_seed, s_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    x = tf.cast(image, tf.float32) / 255.0
    if brightness:
        x = x * tf.random.stateless_uniform([], b_seed, 1 - brightness, 1 + brightness)
    if contrast:
        x = tf.image.stateless_random_contrast(x, 1 - contrast, 1 + contrast, c_seed)
    if saturation:
        x = tf.image.stateless_random_saturation(tf.clip_by_value(x, 0.0, 1.0), 1 - saturation, 1 + saturation, s_seed)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def augment_image(
    image: Any,
    size: tuple[int, int],
    seed: Any,
    *,
    mode: str = "crop",
    flip: bool = True,
    color: bool = True,
    randaugment: tuple[int, int] | None = None,
) -> Any:
    """The training augmentation of one image: crop or scale jitter, then flip and colour jitter.

    ``seed`` is an int tensor of shape [2]; the output is float32 (H, W, 3) in 0..255.
    ``randaugment`` (N ops, magnitude M: :mod:`tlkit.data.randaugment`) replaces the colour jitter
    after the crop and flip, as timm does: its brightness, contrast and color ops are the jitter's
    (stronger) kin. Its seed is folded from ``seed``, so the crop and flip stay those of the same seed
    without it.
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
    if randaugment is not None:
        from tlkit.data.randaugment import rand_augment

        x = rand_augment(x, tf.random.experimental.stateless_fold_in(seed, 0x5241), *randaugment)
    elif color:
        x = color_jitter(x, c_seed)
    return tf.ensure_shape(tf.cast(x, tf.float32), [size[0], size[1], 3])
