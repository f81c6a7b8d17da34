"""Multi-worker input sharded by file: each worker reads and decodes only its share of an epoch.

The layout is the one-process epoch's: the epoch's list (shuffled by (seed, epoch) for
training, in order for evaluation) is cut into global batches of ``batch_size``, and worker
``i`` of ``N`` takes, from every global batch, the items at offsets ``i, i+N, i+2N, ...``
(:func:`positions`). So

* the union of the workers' batches at every step is exactly the batch one process trains on
  at that step (same items, same augmentation keys), and each worker decodes about 1/N of
  the images;
* every worker runs the same number of steps, ``ceil(n / batch_size)`` (:func:`batch`): no
  remainder is dropped and nothing is repeated. Where a worker's share of the last global
  batch is empty (or every file of it failed to decode under ``--check-sample``), it gets an
  empty batch, and the training loop runs one zero image with weight 0 in its place
  (:mod:`tlkit.finetune.distributed_train`), so it joins the step's collectives and adds
  nothing to the loss, the gradients or the metrics: every validation image counts once.

Prepared records (``tlkit prepare``) are split by shard file instead (:func:`batch_own`): worker
``i`` reads only every ``N``-th shard file from ``i``
(:func:`tlkit.data.records_source.for_worker`), shuffled within its files (seeded, so the same
every run), in batches of its part of a global batch (at least one image). Every worker runs
:func:`own_steps` steps, the most any worker needs, and a worker that runs out first gets empty
batches (weight 0, as above): every training and validation image still counts once per
epoch, but a step's global batch is not the one a single process would train on, and the
last steps can hold fewer images. ``TLKIT_DEBUG_OPENED=DIR`` makes each process append to
``DIR/opened-<worker>.txt`` one line ``<tag>\\t<path>`` per file its pipeline opens (for the
tests that count each worker's files); unset, nothing is added to the graph.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

OPENED_ENV = "TLKIT_DEBUG_OPENED"
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's input pipeline: ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in 0..{self.count - 1}")


def positions(n: int, batch_size: int, shard: Shard) -> np.ndarray:
    """The positions (int64, ascending) of an ``n``-item epoch list that ``shard`` takes: offsets
    ``index, index+count, ...`` of every global batch of ``batch_size``."""
    p = np.arange(n, dtype=np.int64)
    return p[(p % batch_size) % shard.count == shard.index]


def steps(n: int, batch_size: int) -> int:
    """Steps of an epoch of ``n`` items in global batches of ``batch_size`` (on every worker)."""
    return math.ceil(n / batch_size)


def worker_batch_size(batch_size: int, shard: Shard) -> int:
    """Items ``shard`` takes from a full global batch (``batch_size // count``, or one more)."""
    return len(range(shard.index, batch_size, shard.count))


def share(items: Sequence[T], batch_size: int, shard: Shard) -> list[T]:
    """The items of ``items`` (files, record shards, ...) at :func:`positions`, in order."""
    return [items[int(i)] for i in positions(len(items), batch_size, shard)]


def _padded_to(ds: Any, b: int, total: int, image_shape: Sequence[int]) -> Any:
    """``ds`` in batches of ``b`` (none when ``b`` is 0), then empty batches: exactly ``total``.

    An empty batch's labels have the shape and type of ``ds``'s (int32 ``[0]``, or float32 multi-hot ``[0, C]``)."""
    import tensorflow as tf

    spec = ds.element_spec[1]
    label_shape = [int(d) for d in spec.shape] if spec.shape.rank else []
    empty = tf.data.Dataset.from_tensors(
        (tf.zeros([0, *[int(d) for d in image_shape]], tf.float32), tf.zeros([0, *label_shape], spec.dtype))
    ).repeat()
    if b == 0:  # fewer items per global batch than workers: this one never has any
        return empty.take(total)
    return ds.batch(b).concatenate(empty).take(total)


def batch(ds: Any, n: int, batch_size: int, shard: Shard, image_shape: Sequence[int]) -> Any:
    """Batch ``shard``'s elements ``(image, label)`` of an ``n``-item epoch into exactly
    :func:`steps` batches: its part of each global batch, then empty batches for any step it
    has nothing for (an empty share of the last batch, or skipped undecodable files)."""
    return _padded_to(ds, worker_batch_size(batch_size, shard), steps(n, batch_size), image_shape)


def own_batch_size(batch_size: int, shard: Shard) -> int:
    """Items per step of a worker reading its own shard files: its part of a global batch, at least one."""
    return max(1, worker_batch_size(batch_size, shard))


def own_steps(counts: Sequence[int], batch_size: int) -> int:
    """Steps of an epoch where worker ``w`` holds ``counts[w]`` items: the most any worker needs."""
    return max(math.ceil(c / own_batch_size(batch_size, Shard(w, len(counts)))) for w, c in enumerate(counts))


def batch_own(ds: Any, counts: Sequence[int], batch_size: int, shard: Shard, image_shape: Sequence[int]) -> Any:
    """Batch ``shard``'s own items ``(image, label)`` (``counts[shard.index]`` of them; worker ``w``
    holds ``counts[w]``) into exactly :func:`own_steps` batches of :func:`own_batch_size`, the
    steps it has nothing for filled with empty batches."""
    return _padded_to(ds, own_batch_size(batch_size, shard), own_steps(counts, batch_size), image_shape)


def worker_label() -> str:
    """``worker-I`` (``chief-I``) from ``TF_CONFIG``; ``pid-P`` for a process outside a cluster."""
    import json

    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    except ValueError:
        task = {}
    if task.get("type") is not None:
        return f"{task['type']}-{int(task.get('index', 0))}"
    return f"pid-{os.getpid()}"


_lock = threading.Lock()


def traced(path: Any, tag: Any) -> Any:
    """``path`` (a string tensor), logged with ``tag`` when ``TLKIT_DEBUG_OPENED`` is set (see above)."""
    folder = os.environ.get(OPENED_ENV)
    if not folder:
        return path
    import tensorflow as tf

    target = os.path.join(folder, f"opened-{worker_label()}.txt")

    def write(p: Any, t: Any) -> Any:
        with _lock, open(target, "a") as f:
            f.write(f"{np.asarray(t).item().decode()}\t{np.asarray(p).item().decode()}\n")
        return p

    tag = tf.convert_to_tensor(tag)
    tag = tag if tag.dtype == tf.string else tf.strings.as_string(tag)
    out = tf.numpy_function(write, [path, tag], tf.string)
    out.set_shape([])
    return out
