"""Prepared records without the CLI: the pure-Python TFRecord reader and the per-worker split by shard file."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from tlkit.data import sharding
from tlkit.data.records_source import for_worker, shard_files, worker_counts
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
    with pytest.raises(DataError, match="tlkit prepare --shards 6"):
        for_worker(src, 0, 6)
    # A split with fewer shards than workers (validation) may leave a worker with nothing.
    assert [len(for_worker(src, i, 2, "val", need_all=False).items) for i in range(2)] == [21, 20]


def test_every_worker_runs_the_steps_of_the_one_with_most_items_then_empty_batches():
    import tensorflow as tf

    src = _source(5)  # train shards of 4 items: worker 0 holds 3 of them (12 items), worker 1 two (8)
    assert worker_counts(src, "train", 2) == [12, 8] and worker_counts(src, "val", 2) == [1, 0]
    # A global batch of 6: 3 per worker, so 4 steps for worker 0; worker 1 has 3 then an empty one.
    assert sharding.own_steps([12, 8], 6) == 4 and sharding.own_steps([1, 0], 6) == 1
    assert sharding.own_steps([5, 5, 5], 2) == 5  # fewer images per global batch than workers: one each
    sizes = {}
    for i, n in enumerate([12, 8]):
        ds = tf.data.Dataset.from_tensor_slices((tf.zeros([n, 2, 2, 3]), tf.range(n, dtype=tf.int32)))
        steps = list(sharding.batch_own(ds, [12, 8], 6, sharding.Shard(i, 2), (2, 2, 3)))
        sizes[i] = [int(y.shape[0]) for _, y in steps]
        assert sorted(int(v) for _, y in steps for v in y) == list(range(n))
    assert sizes == {0: [3, 3, 3, 3], 1: [3, 3, 2, 0]}
    # Training on more workers than train shards is refused before any file is read.
    from tlkit.data import pipeline as tldata

    with pytest.raises(DataError, match=r"5 train shard\(s\) for 6 workers; .*tlkit prepare --shards 6"):
        tldata.make_dataset(src, "train", image_size=(8, 8), batch_size=6, training=True, shard=sharding.Shard(0, 6))
