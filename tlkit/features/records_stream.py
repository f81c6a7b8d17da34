"""Feature extraction's rows and batches for files and for prepared records (``tlkit prepare``):
records come as :func:`tlkit.features.stream.chunked_images` gives files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd


def chunked_records(
    source: Any, todo: pd.DataFrame, *, chunk_rows: int, batch_size: int, size: tuple, channels: int
) -> Iterator[tuple[Any, Any, Any]]:
    """Batches of (resized images, their paths, their chunk index) for the rows of ``todo`` (sorted
    by key, the order the shards hold them), each chunk of ``chunk_rows`` rows batched on its own."""
    import tensorflow as tf

    from tlkit.data import resize as rs
    from tlkit.data.decode import with_threading
    from tlkit.data.records_source import records_dataset

    if todo.empty:
        return
    size = (int(size[0]), int(size[1]))
    src = dataclasses.replace(source, items=todo.assign(split="train"))  # one split holding exactly todo
    ds = records_dataset(src, "train", training=False, ordered=True, with_key=True)

    def image(x: Any, y: Any, k: Any) -> Any:
        x = rs.resize(x, size)
        return (tf.image.rgb_to_grayscale(x) if channels == 1 else x), k

    ds = with_threading(ds.map(image, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    where = {int(k): i for i, k in enumerate(todo["key"].to_numpy())}
    paths = todo["path"].astype(str).to_numpy()
    batch: list[np.ndarray] = []
    names: list[str] = []
    current = -1
    for x, k in ds.as_numpy_iterator():
        i = where[int(k)]
        c = i // chunk_rows
        if batch and (c != current or len(batch) == batch_size):
            yield tf.constant(np.stack(batch)), tf.constant(names), tf.fill([len(batch)], current)
            batch, names = [], []
        batch.append(x)
        names.append(paths[i])
        current = c
    if batch:
        yield tf.constant(np.stack(batch)), tf.constant(names), tf.fill([len(batch)], current)


def extraction_items(source: Any, report: Any) -> pd.DataFrame:
    """The rows to extract, in the order they are read: files sorted by path (bad ones left out);
    records in the order the shards hold them (key; prepare left the bad files out)."""
    if source.kind == "records":
        return source.items.sort_values("key", kind="stable").reset_index(drop=True)
    return report.clean_items().sort_values("path", kind="stable").reset_index(drop=True)


def extraction_batches(source: Any, todo: pd.DataFrame, **kw: Any) -> Any:
    """:func:`chunked_records` for records, else :func:`tlkit.features.stream.chunked_images` of the paths."""
    if source.kind == "records":
        return chunked_records(source, todo, **kw)
    from tlkit.features.stream import chunked_images

    return chunked_images(todo["path"].tolist(), **kw)
