"""Mixup and CutMix on training batches, with randomness that is a function of (seed, epoch, batch).

``--mixup ALPHA``: ``lam ~ Beta(alpha, alpha)`` once per batch, and each image becomes
``lam * x + (1 - lam) * x[perm]``, its label vector ``lam * y + (1 - lam) * y[perm]``, where
``perm`` reverses the batch (Zhang et al. 2018; timm's ``x.flip(0)``: the batch was shuffled, so
this pairs images at random, and no image is paired with itself but the middle one of an odd
batch). ``--cutmix ALPHA``
(Yun et al. 2019, timm's ``rand_bbox`` with ``correct_lam``): a box of area ``1 - lam`` (side
ratio ``sqrt(1 - lam)``, centre uniform over the image, clipped at the borders) is pasted from
``x[perm]``, and the labels are mixed by the fraction of pixels really pasted. With both, each
batch uses one of them, CutMix with probability :data:`SWITCH_PROB` (timm's ``switch_prob``).
Label vectors are any float ``[B, C]`` (one-hot, or multi-hot for multi-label data).

Each batch's randomness is stateless, seeded by the run's seed and ``epoch * 2**32 + batch``,
the epoch read from the training pipeline's epoch variable when an epoch's iteration starts
(:func:`tlkit.data.pipeline.epoch_variable`): a resumed run mixes epoch e's batches as an
uninterrupted one does. Applied only to training batches, after the decode cache and the
per-image augmentation (:func:`tlkit.data.pipeline.make_dataset`).

Why not Keras 3.15's ``keras.layers.MixUp``/``CutMix``: (1) their randomness comes from a
``SeedGenerator`` or an int (``keras.random.draw_seed`` refuses a seed tensor), so a per-batch seed
computed in the pipeline from (seed, epoch, batch) cannot be handed to them; it would take
rewriting a generator's variable inside the pipeline, a stateful op. (2) ``CutMix(factor)`` takes
a factor in [0, 1] and draws each batch's alpha uniformly from ``[0, factor]`` before
``Beta(alpha, alpha)``: timm's fixed ``Beta(1, 1)`` (``--cutmix 1.0``) or any alpha above 1 cannot
be asked for. (3) ``CutMix`` mixes the labels by the area of its float-valued box while it pastes
the whole pixels inside it, so the label weight differs from the pasted fraction (measured in
``tests/test_mixing.py``). The math here is theirs otherwise, in stateless TensorFlow ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SWITCH_PROB = 0.5
_SALT = 0x6D6978  # "mix": keeps these seeds apart from the per-image augmentation's


@dataclass(frozen=True)
class Mixing:
    """What to mix: ``mixup``/``cutmix`` alphas (0 = off) and the run's seed."""

    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int = 0
    switch_prob: float = SWITCH_PROB

    def __bool__(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def _beta(alpha: float, seed: Any) -> Any:
    """One ``Beta(alpha, alpha)`` sample from two stateless gammas."""
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma([], s[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([], s[1], alpha=alpha)
    return g1 / tf.maximum(g1 + g2, 1e-12)


def box_mask(height: Any, width: Any, lam: Any, seed: Any) -> tuple[Any, Any]:
    """timm's ``rand_bbox``: a bool ``[H, W]`` mask of a box of side ratio ``sqrt(1 - lam)``,
    centred uniformly and clipped at the borders, and the fraction of pixels it covers."""
    import tensorflow as tf

    h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.cast(h, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(w, tf.float32) * ratio, tf.int32)
    s = tf.random.experimental.stateless_split(seed, 2)
    cy = tf.random.stateless_uniform([], s[0], minval=0, maxval=tf.maximum(h, 1), dtype=tf.int32)
    cx = tf.random.stateless_uniform([], s[1], minval=0, maxval=tf.maximum(w, 1), dtype=tf.int32)
    y0, y1 = tf.clip_by_value(cy - cut_h // 2, 0, h), tf.clip_by_value(cy + cut_h // 2, 0, h)
    x0, x1 = tf.clip_by_value(cx - cut_w // 2, 0, w), tf.clip_by_value(cx + cut_w // 2, 0, w)
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    mask = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(tf.maximum(h * w, 1), tf.float32)
    return mask, area


def mix_batch(x: Any, y: Any, seed: Any, mixing: Mixing) -> tuple[Any, Any]:
    """Mix one batch (float32 images ``[B, H, W, C]``, float labels ``[B, K]``) with itself reversed;
    ``seed`` is a stateless int64 ``[2]`` seed. An empty batch comes back as it is."""
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 4)
    x2, y2 = tf.reverse(x, [0]), tf.reverse(y, [0])
    if mixing.mixup > 0 and mixing.cutmix > 0:
        use_cutmix = tf.random.stateless_uniform([], s[1]) < mixing.switch_prob
    else:
        use_cutmix = tf.constant(mixing.cutmix > 0)

    def mixup() -> tuple[Any, Any]:
        lam = _beta(float(mixing.mixup or 1.0), s[2])
        return lam * x + (1.0 - lam) * x2, lam

    def cutmix() -> tuple[Any, Any]:
        lam = _beta(float(mixing.cutmix or 1.0), s[2])
        mask, area = box_mask(tf.shape(x)[1], tf.shape(x)[2], lam, s[3])
        return tf.where(mask[None, :, :, None], x2, x), 1.0 - area

    mixed, weight = tf.cond(use_cutmix, cutmix, mixup)
    weight = tf.cast(weight, y.dtype)
    return mixed, weight * y + (1.0 - weight) * y2


def float_labels(y: Any, num_classes: int) -> Any:
    """Class ids ``[B]`` as one-hot float32 ``[B, num_classes]``; float label vectors as they are."""
    import tensorflow as tf

    if y.shape.rank == 1:
        return tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)
    return tf.cast(y, tf.float32)


def batch_seed(seed: int, key: Any) -> Any:
    """The stateless seed of the batch with int64 ``key`` (``epoch * 2**32 + batch``)."""
    import tensorflow as tf

    return tf.stack([tf.cast(key, tf.int64), tf.constant((int(seed) << 24) + _SALT, tf.int64)])


def mixed(ds: Any, mixing: Mixing, epoch: Any = None) -> Any:
    """``ds`` (batches of images and float label vectors) with each batch mixed.

    ``epoch``: the pipeline's epoch variable, read once when an iteration starts; the batch's key
    is then ``epoch * 2**32 + its index``. Without it, a random int64 per batch, fresh each
    iteration and the same for the same seed (as the uncached pipelines' augmentation seeds).
    """
    import tensorflow as tf

    n = int(ds.cardinality())
    if epoch is not None:
        # The read is inside flat_map: once per iteration, when it starts (as tlkit.data.pipeline._epoch_keyed).
        keys = tf.data.Dataset.range(1).flat_map(
            lambda _: tf.data.Dataset.from_tensors(tf.cast(epoch.read_value(), tf.int64)).repeat().enumerate()
        )
        keys = keys.map(lambda i, e: e * 2**32 + i)
    else:
        keys = tf.data.Dataset.random(seed=mixing.seed, rerandomize_each_iteration=True)
    out = tf.data.Dataset.zip((ds, keys)).map(lambda xy, k: mix_batch(xy[0], xy[1], batch_seed(mixing.seed, k), mixing))
    return out.apply(tf.data.experimental.assert_cardinality(n)) if n >= 0 else out


def label_vectors(ds: Any, num_classes: int | None, mixing: Mixing | None, epoch: Any = None) -> Any:
    """The hook of :func:`tlkit.data.pipeline.make_dataset` on its batches: labels as float vectors of
    ``num_classes`` (None: as they are), then mixed when ``mixing`` is on (training batches only)."""
    import tensorflow as tf

    if num_classes is None and not mixing:
        return ds
    if num_classes is not None:
        ds = ds.map(lambda x, y: (x, float_labels(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE)
    if mixing:
        ds = mixed(ds, mixing, epoch).prefetch(tf.data.AUTOTUNE)
    return ds
