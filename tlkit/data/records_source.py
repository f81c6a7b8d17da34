"""Reading a folder written by ``tlkit prepare`` (:mod:`tlkit.data.prepare`): a :class:`DataSource`
of ``kind == "records"`` and its ``tf.data`` records.

The folder is recognised by its manifest (``tlkit-prepared.json``), local or on ``gs://``/``s3://``.
Its ``items`` are the prepared images, one row each: ``path`` (the source file), ``label``,
``label_id``, ``split`` (as prepared), ``shard`` (the shard file's name) and ``key`` (the record's
key). :func:`records_dataset` reads the shards that hold the rows of ``items`` in a split and keeps
exactly those rows, with ``label_id`` taken from ``items``: a caller narrows a source to some
shards (:func:`for_worker`: one worker's share, by shard file) or relabels it by replacing
``items``. Local shards are read by ``TFRecordDataset``; shards on an object store through fsspec
(:mod:`tlkit.data.tfrecord_io`), which reads ``s3://`` where TensorFlow cannot.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlkit.data import sharding
from tlkit.data.prepare import FORMAT, MANIFEST
from tlkit.data.sources import SPLITS, DataSource, count_table
from tlkit.errors import DataError
from tlkit.storage import remote


def is_prepared(spec: str) -> bool:
    """Whether ``spec`` is a folder written by ``tlkit prepare`` (it holds the manifest)."""
    if remote.is_remote(spec):
        try:
            return bool(remote.filesystem(spec).exists(remote.join(spec, MANIFEST)))
        except OSError:
            return False
    try:
        return (Path(remote.local_path(spec)).expanduser() / MANIFEST).is_file()
    except OSError:
        return False


def read_manifest(spec: str) -> dict:
    """The manifest of a prepared folder, checked for its format."""
    where = remote.join(spec, MANIFEST)
    try:
        if remote.is_remote(spec):
            with remote.filesystem(spec).open(where, "rb") as f:
                text = f.read().decode("utf-8")
        else:
            text = Path(where).expanduser().read_text(encoding="utf-8")
        manifest = json.loads(text)
    except OSError as e:
        raise remote.storage_error(where, e, "read") from e
    except ValueError as e:
        raise DataError(f"{where} is not valid JSON ({e}); prepare the data again with tlkit prepare --force") from e
    if manifest.get("format") != FORMAT:
        raise DataError(f"{where} is not a tlkit prepare manifest; prepare the data again")
    return manifest


def from_prepared(spec: str, *, min_classes: int = 2) -> DataSource:
    """The :class:`DataSource` of a prepared folder (its splits are the prepared ones)."""
    from tlkit.data.sources import _check_classes

    root = spec.rstrip("/") if remote.is_remote(spec) else str(Path(remote.local_path(spec)).expanduser().resolve())
    m = read_manifest(root)
    classes = list(m["classes"])
    _check_classes(classes, min_classes, root, "class")
    rows = [
        (path, classes[label], label, split, entry["shards"][shard]["file"], key)
        for split, entry in m["splits"].items()
        for key, label, shard, path in entry["items"]
    ]
    items = pd.DataFrame(rows, columns=["path", "label", "label_id", "split", "shard", "key"])
    items = items.astype({"label_id": "int64", "key": "int64"})
    size = "x".join(str(v) for v in m["size"])
    what = "shorter side" if m.get("size_mode") == "shorter" else "pixels"
    return DataSource(
        spec=spec,
        kind="records",
        classes=classes,
        items=items,
        description=(
            f"prepared records {root} ({m['images']} images, {len(classes)} classes, {m['num_shards']} shards, "
            f"JPEG q{m['quality']} at {size} {what}; from {m['source']})"
        ),
        root=root,
        split_method="prepared",
    )


def shard_files(source: DataSource, split: str | None = None) -> list[str]:
    """The shard files (full paths or URLs) holding ``source``'s items (of ``split``), sorted."""
    assert source.items is not None
    items = source.items if split is None else source.items[source.items["split"] == split]
    return [remote.join(source.root, name) for name in sorted(set(items["shard"]))]


def _worker_shards(source: DataSource, split: str, count: int, need_all: bool) -> list[list[str]]:
    """Each worker's shard-file names of ``split``: every ``count``-th, from the worker's index."""
    assert source.items is not None
    names = sorted(set(source.items.loc[source.items["split"] == split, "shard"]))
    if need_all and len(names) < count:
        raise DataError(
            f"{source.spec} has {len(names)} {split} shard(s) for {count} workers; prepare it again with "
            f"tlkit prepare --shards {count} (or more) so that each worker reads its own files"
        )
    return [names[i::count] for i in range(count)]


def for_worker(
    source: DataSource, index: int, count: int, split: str = "train", *, need_all: bool = True
) -> DataSource:
    """``source`` with ``split`` narrowed to worker ``index`` of ``count``'s share: every ``count``-th
    shard file from ``index`` (other splits unchanged). Needs at least ``count`` shards in the split
    (``need_all`` False: a worker past the last shard gets no item of the split)."""
    assert source.items is not None
    mine = set(_worker_shards(source, split, count, need_all)[index])
    keep = (source.items["split"] != split) | source.items["shard"].isin(mine)
    return dataclasses.replace(source, items=source.items[keep].reset_index(drop=True))


def worker_counts(source: DataSource, split: str, count: int) -> list[int]:
    """The number of ``split`` items in each of ``count`` workers' shares (:func:`for_worker`)."""
    assert source.items is not None
    per_shard = source.items.loc[source.items["split"] == split, "shard"].value_counts()
    return [int(per_shard[names].sum()) for names in _worker_shards(source, split, count, need_all=False)]


def _remote_records(url: bytes) -> Any:
    from tlkit.data.tfrecord_io import read_records

    name = url.decode() if isinstance(url, bytes) else str(url)
    fs = remote.filesystem(name)
    try:
        with fs.open(name, "rb", block_size=8 << 20) as f:
            yield from read_records(f, name)
    except OSError as e:
        raise remote.storage_error(name, e, "read") from e


def records_dataset(
    source: DataSource, split: str, *, training: bool, seed: int = 0, ordered: bool = False, with_key: bool = False
) -> Any:
    """``(uint8 image [H, W, 3], int32 label)`` for the rows of ``source.items`` in ``split``
    (``with_key``: and the int64 key).

    Training reads the shard files in a seeded order that changes every epoch, interleaved;
    evaluation interleaves them in a fixed order. ``ordered``: one shard after another, in key order
    (the records then come in ascending key order).
    """
    import tensorflow as tf

    assert source.items is not None
    rows = source.items[source.items["split"] == split]
    files = shard_files(source, split)
    if ordered:
        first = rows.groupby("shard")["key"].min()
        files = [remote.join(source.root, name) for name in first.sort_values().index]
    size = int(source.items["key"].max()) + 1
    keep = np.zeros(size, dtype=bool)
    keep[rows["key"].to_numpy()] = True
    labels = np.zeros(size, dtype=np.int32)
    labels[rows["key"].to_numpy()] = rows["label_id"].to_numpy(dtype=np.int32)
    keep_t, labels_t = tf.constant(keep), tf.constant(labels)
    auto = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string, shape=[len(files)]))
    if training:
        ds = ds.shuffle(max(1, len(files)), seed=seed, reshuffle_each_iteration=True)
    if remote.is_remote(source.root):

        def read(f: Any) -> Any:
            return tf.data.Dataset.from_generator(
                _remote_records, args=(f,), output_signature=tf.TensorSpec([], tf.string)
            )
    else:

        def read(f: Any) -> Any:
            return tf.data.TFRecordDataset(f, buffer_size=4 << 20)

    # TLKIT_DEBUG_OPENED: each shard file opened, tagged with the split (tlkit.data.sharding.traced).
    ds = ds.map(lambda f: sharding.traced(f, split))
    cycle = 1 if ordered else max(1, min(len(files), 8))
    ds = ds.interleave(read, cycle_length=cycle, num_parallel_calls=auto, deterministic=True)
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "key": tf.io.FixedLenFeature([], tf.int64)}
    ds = ds.map(lambda r: tf.io.parse_single_example(r, spec), num_parallel_calls=auto)
    ds = ds.filter(lambda ex: tf.gather(keep_t, ex["key"]))

    def decoded(ex: Any) -> Any:
        image = tf.ensure_shape(tf.io.decode_jpeg(ex["image"], channels=3), [None, None, 3])
        label = tf.gather(labels_t, ex["key"])
        return (image, label, ex["key"]) if with_key else (image, label)

    ds = ds.map(decoded, num_parallel_calls=auto)
    return ds.apply(tf.data.experimental.assert_cardinality(len(rows)))


def verify_shards(source: DataSource, manifest: dict | None = None) -> list[str]:
    """Problems with the shard files against the manifest (missing, wrong size or SHA-256); [] if none.

    Reads every shard once (``tlkit check-data``)."""
    import hashlib

    m = manifest or read_manifest(source.root)
    problems = []
    fs = remote.filesystem(source.root) if remote.is_remote(source.root) else None
    for entry in m["splits"].values():
        for shard in entry["shards"]:
            where = remote.join(source.root, shard["file"])
            h = hashlib.sha256()
            try:
                with fs.open(where, "rb") if fs else open(where, "rb") as f:
                    for chunk in iter(lambda f=f: f.read(8 << 20), b""):
                        h.update(chunk)
            except FileNotFoundError:
                problems.append(f"{where}: missing")
                continue
            if h.hexdigest() != shard["sha256"]:
                problems.append(f"{where}: content differs from the manifest (SHA-256)")
    return problems


def records_report(source: DataSource, *, thorough: bool = False) -> Any:
    """The preflight :class:`~tlkit.data.report.Report` of a prepared source: counts from its items;
    ``thorough`` (``tlkit check-data``) also verifies every shard's checksum."""
    import time

    from tlkit.data.report import Report

    t0 = time.perf_counter()
    assert source.items is not None
    m = read_manifest(source.root)
    if thorough and (problems := verify_shards(source, m)):
        raise DataError(
            f"{len(problems)} shard(s) of {source.root} are damaged ({problems[0]}); prepare the data again "
            "with tlkit prepare --force"
        )
    items = source.items
    present = [s for s in SPLITS if s in set(items["split"])]
    counts = count_table(items, present, list(source.classes))
    report = Report(
        spec=source.spec,
        description=source.description,
        kind="records",
        classes=list(source.classes),
        split_method=source.split_method,
        class_counts=counts,
        n_files=len(items),
        files_checked=False,
        _items=items,
    )
    if m.get("size_mode") == "fixed":
        h, w = m["size"]
        report.image_sizes = {
            "height": {"min": h, "median": h, "max": h},
            "width": {"min": w, "median": w, "max": w},
        }
    report.seconds = time.perf_counter() - t0
    return report
