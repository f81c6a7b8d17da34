"""The ``tf.data`` pipeline: parallel decode, resize (:mod:`tlkit.data.resize`) or seeded
augmentation, batch, prefetch.

Images come out as float32 in the raw 0..255 range: normalisation lives inside the model
(:mod:`tlkit.models.preprocessing`). Resolving what the user typed into a
:class:`~tlkit.data.sources.DataSource` is :mod:`tlkit.data.sources` (re-exported here, with the
split helpers, for the callers that use ``tlkit.data.pipeline`` as the data package's front).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tlkit.data.decode import decode_bytes, decode_need, with_threading
from tlkit.data.multilabel import label_array
from tlkit.data.remote_read import any_remote, fetch_first
from tlkit.data.sources import SPLITS, DataSource, dataset_size, resolve  # noqa: F401  (re-exported)
from tlkit.data.splits import class_weights, stratified_split  # noqa: F401  (re-exported)
from tlkit.data.tfds_source import tfds_class_counts  # noqa: F401  (re-exported)
from tlkit.errors import DataError


def _decode_file(path: Any, need: tuple[int, int] | None = None) -> Any:
    """Read and decode one file to uint8 (H, W, 3); see :func:`tlkit.data.decode.decode_file`."""
    from tlkit.data.decode import decode_file

    return decode_file(path, need)


def _to_rgb(img: Any) -> Any:
    """Any channel count to 3: gray (and gray+alpha) is repeated, alpha is dropped."""
    import tensorflow as tf

    c = tf.shape(img)[-1]
    img = tf.cond(c < 3, lambda: tf.repeat(img[..., :1], 3, axis=-1), lambda: img[..., :3])
    img.set_shape([None, None, 3])
    return img


def images_dataset(paths: Sequence[str], *, image_size: tuple[int, int], batch_size: int, channels: int = 3) -> Any:
    """Batches of decoded, resized images (float32 0..255) for ``paths``, in order (no labels).

    For feature extraction and prediction over a list of files; same decoding as training.
    """
    import tensorflow as tf

    from tlkit.data import resize as rs

    size = (int(image_size[0]), int(image_size[1]))
    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    if any_remote(paths):  # objects on a bucket: fetched in batches through fsspec, decoded in the graph
        ds = fetch_first(ds).map(lambda d: rs.resize(decode_bytes(d, decode_need(size)), size), num_parallel_calls=auto)
    else:
        ds = ds.map(lambda p: rs.resize(_decode_file(p, decode_need(size)), size), num_parallel_calls=auto)
    if channels == 1:
        ds = ds.map(tf.image.rgb_to_grayscale, num_parallel_calls=auto)
    return with_threading(ds.batch(batch_size).prefetch(auto))


def make_dataset(
    source: DataSource,
    split: str,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    training: bool,
    augment: str | None = "crop",
    seed: int = 0,
    shuffle_buffer: int = 2048,
    cache: bool | str = False,
    flip: bool = True,
    color: bool = True,
    channels: int = 3,
    skip_undecodable: bool = False,
    cache_budget: int | str | None = None,
    epoch: Any = None,
    shard: Any = None,
    randaugment: tuple[int, int] | None = None,
    label_classes: int | None = None,
    mixing: Any = None,
) -> Any:
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 [B,H,W,3] in 0..255, int32 [B])``; the
    labels are float32 multi-hot ``[B, C]`` for a multi-label source (:mod:`tlkit.data.multilabel`).

    ``training`` shuffles (seeded; a new, reproducible order every epoch) and, with
    ``augment`` ``"crop"`` (random resized crop) or ``"scale"`` (VGG scale jitter), augments
    with per-element stateless seeds (plus flip and colour jitter unless ``flip``/``color``
    are False: turn flip off for digits or text). Otherwise images are only resized to
    ``image_size``. File sources shuffle the whole list of paths (cheap) before decoding;
    ``shuffle_buffer`` is used where decoded examples are shuffled (TFDS, ``cache``).
    ``cache`` keeps decoded images in memory (small datasets); ``"mem"`` or a folder caches
    resized uint8 images before augmentation within ``cache_budget`` (:mod:`tlkit.data.cache`,
    ``--cache``). Run the preflight first:
    the pipeline assumes every file decodes. ``channels=1`` gives grayscale images (for
    models such as LeNet-5 that take one channel). ``skip_undecodable`` drops a file that
    does not decode, with TensorFlow's warning, instead of failing: for files a sampled
    preflight (``--check-sample``) did not check.

    ``epoch`` (training on files without ``cache``): an int64 ``tf.Variable`` holding the epoch
    number (:func:`epoch_variable`). Each iteration then reads it when it starts, and the epoch's
    shuffle order and every augmentation seed are a pure function of (``seed``, epoch): a resumed
    run replays epoch 5 exactly as an uninterrupted one, whichever process or iteration count.
    Without it, the order changes with each iteration of the dataset (epoch 0 again after a restart).

    ``shard`` (a :class:`tlkit.data.sharding.Shard`): for files, this worker's part of every
    global batch of ``batch_size`` (:mod:`tlkit.data.sharding`): it opens only its share of the
    files, and runs the same number of steps as every other worker. For prepared records, this
    worker's own shard files (every N-th; the training split needs at least N), batched by its part
    of ``batch_size`` and padded with empty batches to the steps of the worker that has the most
    (:func:`tlkit.data.sharding.batch_own`).

    ``randaugment`` (N, M): training images get RandAugment (:mod:`tlkit.data.randaugment`) after
    the crop and flip, instead of the colour jitter, seeded per element as the rest; validation and
    unaugmented datasets never do.

    ``label_classes``: labels come as one-hot float32 ``[B, label_classes]`` instead of class ids
    (float label vectors stay as they are). ``mixing`` (a :class:`tlkit.data.mixing.Mixing`, with
    ``training``): each batch is then mixed (mixup/cutmix), after the cache and the augmentation,
    seeded by (seed, ``epoch``, batch) (:mod:`tlkit.data.mixing`).
    """
    import tensorflow as tf

    from tlkit.data import augment as aug
    from tlkit.data import mixing as mx
    from tlkit.data import resize as rs
    from tlkit.data import sharding

    mixing = mixing if training else None  # never in validation, evaluation or export
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if training and augment not in (None, "none", *aug.AUGMENTATIONS):
        raise DataError(f"unknown augmentation {augment!r}; use one of {', '.join(aug.AUGMENTATIONS)} or None")
    size = (int(image_size[0]), int(image_size[1]))
    auto = tf.data.AUTOTUNE
    n = dataset_size(source, split)
    if n == 0:
        raise DataError(f"{source.spec} has no images in split {split!r} (splits: {', '.join(source.splits())})")
    if shard is not None and source.kind not in ("files", "records"):
        raise DataError(f"sharding by file needs a folder, a manifest of files or prepared records, not {source.spec}")
    counts = None
    if shard is not None and source.kind == "records":
        from tlkit.data.records_source import for_worker, worker_counts

        # Validation may have fewer shards than workers (a small split): those workers validate nothing.
        counts = worker_counts(source, split, shard.count)
        source = for_worker(source, shard.index, shard.count, split, need_all=split == "train")

    def batched(ds: Any) -> Any:
        if shard is None:
            ds = ds.batch(batch_size)
        elif counts is not None:
            ds = sharding.batch_own(ds, counts, batch_size, shard, (*size, channels))
        else:
            ds = sharding.batch(ds, n, batch_size, shard, (*size, channels))
        return mx.label_vectors(with_threading(ds.prefetch(auto)), label_classes, mixing, epoch)

    if source.kind == "files":
        assert source.items is not None
        items = source.items[source.items["split"] == split]
        if isinstance(cache, str):  # --cache mem|DIR; None back when over the budget (said): uncached
            from tlkit.data.cache import cached_dataset

            ds = cached_dataset(
                items,
                image_size=size,
                batch_size=batch_size,
                training=training,
                augment=augment,
                seed=seed,
                shuffle_buffer=shuffle_buffer,
                flip=flip,
                color=color,
                channels=channels,
                skip_undecodable=skip_undecodable,
                where=cache,
                budget=cache_budget,
                shard=shard,
                randaugment=randaugment,
                labels=label_array(source, items),
            )
            if ds is not None:
                return mx.label_vectors(ds, label_classes, mixing, epoch)
            cache = False
        paths, labels = items["path"].astype(str).tolist(), label_array(source, items)  # ids, or multi-hot
        need = decode_need(size, augment if training and augment not in (None, "none") else None)
        # Objects on a bucket are fetched in batches (tlkit.data.remote_read), then decoded as files are.
        remote = any_remote(paths)
        decode = decode_bytes if remote else _decode_file
        if training and not cache and epoch is not None:

            def to_pixels(keyed: Any) -> Any:
                if remote:  # each object logged as it is fetched (TLKIT_DEBUG_OPENED), as a file as it is opened
                    keyed = keyed.map(lambda p, y, k: (sharding.traced(p, k // 2**32), y, k))
                    keyed = fetch_first(keyed, skip_missing=skip_undecodable)
                keyed = keyed.map(
                    lambda p, y, k: (decode(p if remote else sharding.traced(p, k // 2**32), need), y, k),
                    num_parallel_calls=auto,
                )
                if skip_undecodable:
                    keyed = keyed.ignore_errors(log_warning=True)
                if augment in (None, "none"):
                    out = keyed.map(lambda x, y, k: (rs.resize(x, size), y), num_parallel_calls=auto)
                else:
                    seed64, mode, ra = tf.constant(int(seed), tf.int64), str(augment), randaugment
                    out = keyed.map(
                        lambda x, y, k: (
                            aug.augment_image(
                                x, size, tf.stack([k, seed64]), mode=mode, flip=flip, color=color, randaugment=ra
                            ),
                            y,
                        ),
                        num_parallel_calls=auto,
                    )
                if channels == 1:
                    out = out.map(lambda x, y: (tf.image.rgb_to_grayscale(x), y), num_parallel_calls=auto)
                return out

            mine = None if shard is None else sharding.positions(n, batch_size, shard)
            ds = _epoch_keyed(paths, labels, seed, epoch, to_pixels, known_length=not skip_undecodable, mine=mine)
            return batched(ds)
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        if training and not cache:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        if shard is not None:  # the same (seeded) order on every worker, then this worker's positions
            keep = tf.constant(np.isin(np.arange(n), sharding.positions(n, batch_size, shard)))
            ds = ds.enumerate().filter(lambda i, py: tf.gather(keep, i)).map(lambda j, pair: pair)
        if remote:
            ds = fetch_first(ds.map(lambda p, y: (sharding.traced(p, split), y)), skip_missing=skip_undecodable)
        ds = ds.map(lambda p, y: (decode(p if remote else sharding.traced(p, split), need), y), num_parallel_calls=auto)
        if skip_undecodable:
            ds = ds.ignore_errors(log_warning=True)
    elif source.kind == "records":  # prepared shards: decoded, upright and resized once (tlkit prepare)
        from tlkit.data.records_source import records_dataset

        ds = records_dataset(source, split, training=training and not cache, seed=seed)
        if training and not cache:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        ds = source.builder().as_dataset(split=source.tfds_splits[split], shuffle_files=False)
        ik, lk = source.image_key, source.label_key
        ds = ds.map(lambda ex: (_to_rgb(ex[ik]), tf.cast(ex[lk], tf.int32)), num_parallel_calls=auto)
        if training and not cache:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if not training or augment in (None, "none"):
        ds = ds.map(lambda x, y: (rs.resize(x, size), y), num_parallel_calls=auto)
        if cache:
            ds = ds.cache()
            if training:
                ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        if cache:
            ds = ds.cache().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # One random int64 per element and epoch (fresh each epoch, same for the same seed) plus
        # the seed give each element its stateless seed, so results do not depend on parallelism.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, randoms))
        seed64 = tf.constant(int(seed), tf.int64)
        mode = str(augment)

        def _aug(xy: Any, r: Any) -> Any:
            x, y = xy
            s = tf.stack([r, seed64])
            return aug.augment_image(x, size, s, mode=mode, flip=flip, color=color, randaugment=randaugment), y

        ds = ds.map(_aug, num_parallel_calls=auto)
    if channels == 1:
        ds = ds.map(lambda x, y: (tf.image.rgb_to_grayscale(x), y), num_parallel_calls=auto)
    return batched(ds)


def epoch_variable() -> Any:
    """The int64 ``tf.Variable`` a training pipeline reads its epoch from (see :func:`make_dataset`)."""
    import tensorflow as tf

    with tf.device("/cpu:0"):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name="tlkit_data_epoch")


def _epoch_keyed(
    paths: list[str],
    labels: np.ndarray,
    seed: int,
    epoch: Any,
    to_pixels: Any,
    *,
    known_length: bool,
    mine: np.ndarray | None = None,
) -> Any:
    """``to_pixels`` of ``(path, label, key)`` in the order of the epoch that ``epoch`` holds when an
    iteration starts.

    The order is a stateless shuffle seeded by (seed, epoch); ``key`` (epoch * 2**32 + position)
    seeds the element's augmentation. Nothing depends on how often the dataset was iterated
    before, so a resume at epoch e sees what an uninterrupted run sees at epoch e. ``mine`` (a
    worker's :func:`tlkit.data.sharding.positions`) keeps those positions of the epoch's order, with
    the keys they have there: the workers' union is the one-process epoch, augmentation included.

    ``to_pixels`` (the decode and augmentation maps) runs inside the epoch's own dataset: the
    variable read is stateful, and under op determinism (``--deterministic``) tf.data turns every
    parallel map downstream of a stateful op into a sequential one (logging a NodeDef error line
    for the rewrite); nested, the maps stay parallel.
    """
    import tensorflow as tf

    paths_t, labels_t = tf.constant(paths, tf.string), tf.constant(labels)  # int32 ids, or float32 multi-hot
    n, seed64 = len(paths), tf.constant(int(seed), tf.int64)

    def one_epoch(_: Any) -> Any:
        e = tf.cast(epoch.read_value(), tf.int64)
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed64, e]))
        keys = e * (2**32) + tf.range(n, dtype=tf.int64)
        if mine is not None:
            order, keys = tf.gather(order, mine), tf.gather(keys, mine)
        return to_pixels(
            tf.data.Dataset.from_tensor_slices((tf.gather(paths_t, order), tf.gather(labels_t, order), keys))
        )

    ds = tf.data.Dataset.range(1).flat_map(one_epoch)
    # flat_map hides the length; Keras wants it (progress bar, no "ran out of data" warning). With
    # skipped files the length is not known before the epoch runs.
    return ds.apply(tf.data.experimental.assert_cardinality(n if mine is None else len(mine))) if known_length else ds
