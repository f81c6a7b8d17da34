"""The segmentation input pipeline: (image, mask) pairs to batches of (float32 pixels 0..255, int32 class indices).

Images are decoded by tlkit's one decoder (:func:`tlkit.data.decode.decode_file`: EXIF orientation
applied) and resized by its one resize (:func:`tlkit.data.resize.resize`, antialiased bilinear);
masks are read as class indices (:func:`tlkit.segment.masks.read_mask`) and resized by nearest
neighbour, with the same half-pixel centres, so a mask pixel stays on its image pixel.

Training augmentation moves image and mask together:

* a random scaled crop: a box of the image's aspect, 1/s of its size for a zoom s uniform in
  :data:`SCALE`, at a uniform place; when s < 1 the box is larger than the image and the rest is
  padding (image 0, mask 255 = ignore: no loss there);
* a horizontal flip with probability 1/2.

Every draw is stateless, seeded by (seed, epoch, position in the epoch) as tlkit's classifier pipeline
(:func:`tlkit.data.pipeline._epoch_keyed`): with ``epoch`` (the trainer's ``tf.Variable``) a resumed
epoch replays the same order and the same crops, bit for bit. Validation and evaluation only
resize, in the given order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tlkit.errors import DataError
from tlkit.segment.masks import IGNORE

SCALE = (0.75, 1.5)  # zoom range of the random scaled crop (below 1: zoomed out, padded with ignore)


def _read_mask_tf(path: Any) -> Any:
    import tensorflow as tf

    def load(p: Any) -> np.ndarray:
        from tlkit.segment.masks import read_mask

        return read_mask((p.item() if isinstance(p, np.ndarray) else p).decode())

    m = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(m, [None, None])


def _decode_pair(image_path: Any, mask_path: Any) -> tuple[Any, Any]:
    """uint8 [H, W, 3] upright pixels and uint8 [H, W] class indices."""
    from tlkit.data.decode import decode_file

    return decode_file(image_path, None), _read_mask_tf(mask_path)


def resize_pair(image: Any, mask: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """Image to float32 [h, w, 3] (tlkit's antialiased bilinear), mask to int32 [h, w] (nearest)."""
    import tensorflow as tf

    from tlkit.data import resize as rs

    x = rs.resize(image, size)
    m = tf.image.resize(tf.cast(mask, tf.int32)[..., None], size, method="nearest")[..., 0]
    return x, tf.ensure_shape(tf.cast(m, tf.int32), [size[0], size[1]])


def augment_pair(
    image: Any, mask: Any, size: tuple[int, int], seed: Any, *, scale: tuple[float, float] = SCALE
) -> tuple[Any, Any]:
    """The training augmentation of one pair (see the module doc); ``seed`` an int tensor [2].

    Returns float32 [h, w, 3] pixels and int32 [h, w] indices; image and mask get the same box and flip.
    """
    import tensorflow as tf

    seed = tf.cast(seed, tf.int64)
    s_seed, y_seed, x_seed, f_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    zoom = tf.random.stateless_uniform([], s_seed, scale[0], scale[1], dtype=tf.float32)
    bh = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) / zoom), tf.int32))
    bw = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) / zoom), tf.int32))

    def offset(room: Any, s: Any) -> Any:
        # uniform in [min(0, room), max(0, room)]: inside the image, or the image inside the box
        lo, hi = tf.minimum(0, room), tf.maximum(0, room)
        return tf.random.stateless_uniform([], s, lo, hi + 1, dtype=tf.int32)

    top, left = offset(h - bh, y_seed), offset(w - bw, x_seed)
    y0, x0 = tf.maximum(top, 0), tf.maximum(left, 0)
    y1, x1 = tf.minimum(top + bh, h), tf.minimum(left + bw, w)
    pads = [[y0 - top, top + bh - y1], [x0 - left, left + bw - x1]]
    img = tf.pad(tf.cast(image[y0:y1, x0:x1], tf.float32), [*pads, [0, 0]], constant_values=0.0)
    msk = tf.pad(tf.cast(mask[y0:y1, x0:x1], tf.int32), pads, constant_values=IGNORE)
    img, msk = resize_pair(img, msk, size)
    flip = tf.random.stateless_uniform([], f_seed) < 0.5
    img = tf.cond(flip, lambda: tf.reverse(img, [1]), lambda: img)
    msk = tf.cond(flip, lambda: tf.reverse(msk, [1]), lambda: msk)
    return tf.ensure_shape(img, [size[0], size[1], 3]), tf.ensure_shape(msk, [size[0], size[1]])


def _in_memory(pairs: Sequence[tuple[str, str]]) -> Any:
    """A random-access in-memory copy of decoded pairs (``cache=True``): index -> (image uint8, mask uint8)."""
    import tensorflow as tf

    from tlkit.data.images import load_rgb
    from tlkit.segment.masks import read_mask

    images = [load_rgb(p) for p, _ in pairs]  # the same upright pixels decode_file gives (tlkit's parity rule)
    masks = [read_mask(m) for _, m in pairs]
    shapes = np.asarray([im.shape[:2] for im in images], np.int64)
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
    flat_img = tf.constant(np.concatenate([im.reshape(-1, 3) for im in images]))
    flat_msk = tf.constant(np.concatenate([m.reshape(-1) for m in masks]))
    shapes_t, offsets_t = tf.constant(shapes), tf.constant(offsets)

    def get(i: Any) -> tuple[Any, Any]:
        hw, a = tf.gather(shapes_t, i), tf.gather(offsets_t, i)
        b = a + hw[0] * hw[1]
        return tf.reshape(flat_img[a:b], [hw[0], hw[1], 3]), tf.reshape(flat_msk[a:b], [hw[0], hw[1]])

    return get


def _random_epochs(images: list[str], refs: np.ndarray, seed: int, to_pixels: Any, mine: Any) -> Any:
    """:func:`tlkit.data.pipeline._epoch_keyed` without an epoch variable: each iteration draws its epoch number."""
    import tensorflow as tf

    n, seed64 = len(images), tf.constant(int(seed), tf.int64)
    paths_t, refs_t = tf.constant(images, tf.string), tf.constant(refs)

    def one_epoch(r: Any) -> Any:
        e = tf.math.floormod(r, 2**20)
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed64, e]))
        keys = e * (2**32) + tf.range(n, dtype=tf.int64)
        if mine is not None:
            order, keys = tf.gather(order, mine), tf.gather(keys, mine)
        slices = (tf.gather(paths_t, order), tf.gather(refs_t, order), keys)
        return to_pixels(tf.data.Dataset.from_tensor_slices(slices))

    ds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True).take(1).flat_map(one_epoch)
    return ds.apply(tf.data.experimental.assert_cardinality(n if mine is None else len(mine)))


def make_segmentation_dataset(
    pairs: Sequence[tuple[str, str]],
    *,
    size: tuple[int, int],
    batch_size: int,
    training: bool,
    seed: int = 0,
    epoch: Any = None,
    augment: bool = True,
    cache: bool = False,
    shard: Any = None,
) -> Any:
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 [B, h, w, 3] 0..255, int32 [B, h, w])``.

    ``training``: a new order each epoch and (with ``augment``) the joint crop and flip, seeded by
    (``seed``, epoch, position); ``epoch`` is the int64 ``tf.Variable`` the trainer assigns at each epoch
    begin (:func:`tlkit.data.pipeline.epoch_variable`); without it each iteration of the dataset counts as
    the next epoch from 0. Otherwise: resized to ``size``, no randomness, ``pairs``' order.
    ``cache``: decode every pair once into memory (small data sets); augmentation still runs each epoch.
    ``shard`` (a :class:`tlkit.data.sharding.Shard`, for ``--workers``): this worker's part of every global
    batch of ``batch_size``, with the keys those items have in the one-process epoch, padded with empty batches
    to the same number of steps on every worker (:mod:`tlkit.data.sharding`).
    """
    import tensorflow as tf

    from tlkit.data import sharding
    from tlkit.data.decode import with_threading
    from tlkit.data.pipeline import _epoch_keyed

    pairs = [(str(a), str(b)) for a, b in pairs]
    if not pairs:
        raise DataError("no (image, mask) pairs to make a dataset of")
    size = (int(size[0]), int(size[1]))
    auto = tf.data.AUTOTUNE
    n = len(pairs)
    mine = None if shard is None else sharding.positions(n, batch_size, shard)
    get = _in_memory(pairs) if cache else None

    def load(image_path: Any, mask_path: Any, index: Any) -> tuple[Any, Any]:
        return get(index) if get is not None else _decode_pair(image_path, mask_path)

    images = [a for a, _ in pairs]
    refs = np.asarray([f"{i}\t{m}" for i, (_, m) in enumerate(pairs)])  # index and mask path ride as the "label"

    def split_ref(ref: Any) -> tuple[Any, Any]:
        parts = tf.strings.split(ref, "\t", maxsplit=1)
        return parts[1], tf.strings.to_number(parts[0], tf.int64)

    if training:
        seed64 = tf.constant(int(seed), tf.int64)

        def to_pixels(keyed: Any) -> Any:
            def one(p: Any, ref: Any, k: Any) -> tuple[Any, Any]:
                mask_path, index = split_ref(ref)
                image, mask = load(p, mask_path, index)
                if not augment:
                    return resize_pair(image, mask, size)
                return augment_pair(image, mask, size, tf.stack([k, seed64]))

            return keyed.map(one, num_parallel_calls=auto, deterministic=True)

        if epoch is None:  # each iteration of the dataset: a fresh (seeded) random epoch number
            ds = _random_epochs(images, refs, seed, to_pixels, mine)
        else:
            ds = _epoch_keyed(images, refs, seed, epoch, to_pixels, known_length=True, mine=mine)
    else:
        keep = np.arange(n) if mine is None else mine
        ds = tf.data.Dataset.from_tensor_slices(([images[i] for i in keep], refs[keep]))

        def one_val(p: Any, ref: Any) -> tuple[Any, Any]:
            mask_path, index = split_ref(ref)
            image, mask = load(p, mask_path, index)
            return resize_pair(image, mask, size)

        ds = ds.map(one_val, num_parallel_calls=auto, deterministic=True)
    ds = ds.batch(batch_size) if shard is None else sharding.batch(ds, n, batch_size, shard, (*size, 3))
    return with_threading(ds.prefetch(auto))
