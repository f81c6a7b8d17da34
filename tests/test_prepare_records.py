"""Prepared records without the CLI: the pure-Python TFRecord reader and the per-worker split by shard file."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from tlkit.data.records_source import for_worker, shard_files
from tlkit.data.sources import DataSource
from tlkit.data.tfrecord_io import read_records
from tlkit.errors import DataError


def test_the_python_reader_reads_what_tensorflow_wrote_and_refuses_damage(tmp_path):
    import tensorflow as tf

    path = tmp_path / "a.tfrecord"
    records = [b"", b"x", bytes(range(256)) * 40]
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    data = path.read_bytes()
    assert list(read_records(io.BytesIO(data), "a")) == records
    with pytest.raises(DataError, match="cut short"):
        list(read_records(io.BytesIO(data[:-3]), "a"))
    bad = bytearray(data)
    bad[0] ^= 1  # the first record's length: its checksum no longer matches
    with pytest.raises(DataError, match="not a TFRecord"):
        list(read_records(io.BytesIO(bytes(bad)), "a"))


def _source(n_shards: int) -> DataSource:
    rows = [
        (f"/src/{i}.jpg", "a", 0, "train", f"train-{i % n_shards:05d}-of-{n_shards:05d}.tfrecord", i) for i in range(20)
    ]
    rows.append(("/src/v.jpg", "a", 0, "val", "val-00000-of-00001.tfrecord", 20))
    items = pd.DataFrame(rows, columns=["path", "label", "label_id", "split", "shard", "key"])
    return DataSource(spec="/p", kind="records", classes=["a"], items=items, root="/p")


def test_each_worker_gets_its_own_shard_files_and_together_all_of_them():
    src = _source(5)
    assert len(shard_files(src, "train")) == 5 and shard_files(src, "val") == ["/p/val-00000-of-00001.tfrecord"]
    parts = [for_worker(src, i, 2) for i in range(2)]
    files = [set(shard_files(p, "train")) for p in parts]
    assert [len(f) for f in files] == [3, 2] and not files[0] & files[1]
    assert files[0] | files[1] == set(shard_files(src, "train"))
    assert sorted(k for p in parts for k in p.items.loc[p.items["split"] == "train", "key"]) == list(range(20))
    assert all((p.items["split"] == "val").sum() == 1 for p in parts)  # other splits are left whole
    with pytest.raises(DataError, match="--shards 6"):
        for_worker(src, 0, 6)
