"""``--cache``: decoded, resized images kept as uint8 after the first epoch, so that later
epochs decode nothing, while augmentation stays random per epoch.

What is cached: each file decoded (at a DCT scale, :mod:`tlkit.data.decode`), resized
(antialiased bilinear, the pipeline's resize) and rounded to uint8, *before* augmentation:

* for evaluation and for training without augmentation, at the model's input size: the
  cached pipeline then feeds exactly these pixels (the uncached one feeds the same resize
  unrounded: within half a level);
* for training with augmentation, at ``PRE_CROP`` (8/7, ImageNet's 256 for 224) times the
  input size, the whole image stretched as the evaluation resize does; random crops, flips
  and colour jitter are then cut from it every epoch. A crop of a quarter of the area is
  upsampled from 128 to 224 pixels there, where the uncached pipeline cuts it from the full
  photo: the price of keeping 3*256*256 bytes (192 KiB) per image instead of the photo.

Where: ``mem`` (process memory; the shuffle buffer holds up to ``shuffle_buffer`` more
images) or a folder (tf.data's cache files, named by a digest of the files' paths, sizes and
times and the cached size, so changed data is never served from a stale cache; a later run
over the same data reads them without opening an image). A budget bounds either: when the
images do not fit, one line says so and the run goes on without the cache.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlkit.errors import ConfigError

MEM = "mem"
PRE_CROP = 8 / 7  # training crops are cut from images cached at this multiple of the input size
DEFAULT_BUDGET = "2GiB"
CACHE_HELP = (
    "keep the decoded, resized images (uint8, before augmentation) after the first epoch: 'mem' for "
    "memory or a folder for cache files; later epochs decode nothing (see --cache-budget)"
)
BUDGET_HELP = (
    "most bytes --cache may hold, e.g. 500MiB, 2GiB; per split; data that "
    "does not fit runs without the cache, with a message"
)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_budget(text: str | int) -> int:
    """``"2GiB"``, ``"500MB"``, ``"1.5g"`` or a byte count -> bytes; :class:`ConfigError` otherwise."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(
            f"--cache-budget {text!r} is not a size; use bytes or a number with a unit, e.g. 500MiB, 2GiB, 1.5GB"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human(n: float) -> str:
    """Bytes in words (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def cached_size(size: tuple[int, int], augment: str | None) -> tuple[int, int]:
    """The (height, width) images are cached at: ``size``, or ``PRE_CROP`` times it for augmented training."""
    h, w = int(size[0]), int(size[1])
    if augment in (None, "none"):
        return h, w
    return math.ceil(h * PRE_CROP), math.ceil(w * PRE_CROP)


def prepare(path: Any, hw: tuple[int, int], tag: str = "cache", *, data: bool = False) -> Any:
    """The cached stage of one file: decoded, resized to ``hw`` and rounded to uint8 [h, w, 3].

    ``data``: ``path`` holds the file's bytes already fetched (objects on a bucket)."""
    import tensorflow as tf

    from tlkit.data import resize as rs
    from tlkit.data.decode import decode_bytes, decode_file, decode_need
    from tlkit.data.sharding import traced

    need = decode_need(hw)
    x = rs.resize(decode_bytes(path, need) if data else decode_file(traced(path, tag), need), hw)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)


def prepared_dataset(paths: list[str], labels: Any, hw: tuple[int, int], *, skip_undecodable: bool = False) -> Any:
    """(uint8 image, label) for each file, in order: what the cache holds (uncached here)."""
    import tensorflow as tf

    from tlkit.data.remote_read import any_remote, fetch_first

    # Typed: an empty share (a worker with no files, tlkit.data.sharding) would be float32.
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), labels))
    if any_remote(paths):  # objects on a bucket: fetched in batches, decoded in the graph
        ds = fetch_first(ds, skip_missing=skip_undecodable)
        ds = ds.map(lambda d, y: (prepare(d, hw, data=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda p, y: (prepare(p, hw), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ignore_errors(log_warning=True) if skip_undecodable else ds


def cache_filename(where: str, paths: list[str], hw: tuple[int, int]) -> str:
    """tf.data's cache file prefix in folder ``where`` for these files at this size ("" for memory)."""
    if where == MEM:
        return ""
    from tlkit.data.decode import DECODER_VERSION
    from tlkit.data.file_checks import file_identity

    digest = hashlib.sha256(repr((hw, DECODER_VERSION)).encode())
    for p in paths:
        digest.update(f"{p}\0{file_identity(p)}\n".encode())
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / f"images-{hw[0]}x{hw[1]}-{digest.hexdigest()[:20]}"
    # A run killed during its first epoch leaves a lock file and no index: tf.data would refuse the
    # prefix ("concurrent caching iterator"); without an index nothing was kept, so start again.
    if not Path(f"{prefix}.index").exists():
        for lock in folder.glob(f"{prefix.name}_*.lockfile"):
            lock.unlink(missing_ok=True)
    return str(prefix)


def cached_dataset(
    items: Any,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    training: bool,
    augment: str | None,
    seed: int,
    shuffle_buffer: int,
    flip: bool,
    color: bool,
    channels: int,
    skip_undecodable: bool,
    where: str | None,
    budget: int | str | None = None,
    log: Callable[[str], None] | None = None,
    shard: Any = None,
    labels: Any = None,
) -> Any:
    """A :func:`tlkit.data.pipeline.make_dataset` pipeline over ``items`` (path, label_id) that caches
    the prepared images in ``where`` (``mem``, a folder, or None: the same pipeline uncached);
    None when they do not fit ``budget`` (``log`` has said so: the caller goes on uncached).

    ``shard`` (multi-worker, :mod:`tlkit.data.sharding`): the worker caches a fixed share of the
    files (its positions of the listed order, the same every epoch, so its cache is reused) and
    shuffles within it; each global batch is then made of the workers' shuffled shares, not the
    batch one process would draw from its own shuffle buffer (``--cache`` epochs are not replayed
    exactly in any case). ``labels``: one per item (multi-hot rows for multi-label data); default
    the items' ``label_id``."""
    import numpy as np
    import tensorflow as tf

    from tlkit.data import augment as aug
    from tlkit.data import sharding
    from tlkit.data.decode import with_threading

    size = (int(image_size[0]), int(image_size[1]))
    mode = None if not training or augment in (None, "none") else str(augment)
    hw = cached_size(size, mode)
    n = len(items)
    labels = items["label_id"].to_numpy(dtype=np.int32) if labels is None else np.asarray(labels)
    if shard is not None:
        mine = sharding.positions(n, batch_size, shard)
        items, labels = items.iloc[mine], labels[mine]  # the budget is then per worker
    paths = items["path"].astype(str).tolist()
    need = len(paths) * hw[0] * hw[1] * 3
    limit = parse_budget(DEFAULT_BUDGET if budget is None else budget)
    if where is not None and need > limit:
        (log or _stderr)(
            f"--cache: {len(paths)} images of {hw[1]}x{hw[0]} need {human(need)}, over --cache-budget "
            f"{human(limit)}; running without the cache (raise --cache-budget to cache them)"
        )
        return None
    ds = prepared_dataset(paths, labels, hw, skip_undecodable=skip_undecodable)
    if where is not None:
        ds = ds.cache(cache_filename(where, paths, hw))
    auto = tf.data.AUTOTUNE
    if training:
        ds = ds.shuffle(min(max(len(paths), 1), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    if mode is None:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=auto)
    else:
        # The same per-element stateless seeds as make_dataset: random per epoch, reproducible per seed.
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)))
        seed64 = tf.constant(int(seed), tf.int64)

        def _aug(xy: Any, r: Any) -> Any:
            x, y = xy
            return aug.augment_image(
                tf.cast(x, tf.float32), size, tf.stack([r, seed64]), mode=mode, flip=flip, color=color
            ), y

        ds = ds.map(_aug, num_parallel_calls=auto)
    if channels == 1:
        ds = ds.map(lambda x, y: (tf.image.rgb_to_grayscale(x), y), num_parallel_calls=auto)
    ds = ds.batch(batch_size) if shard is None else sharding.batch(ds, n, batch_size, shard, (*size, channels))
    return with_threading(ds.prefetch(auto))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
