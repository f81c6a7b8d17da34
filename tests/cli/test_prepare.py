"""``tlkit prepare``: sharded TFRecords written once, read back by finetune / evaluate / extract / check-data."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_RUN,
    assert_one_line_error,
    cli_env,
    make_shapes_folder,
    png_title,
    start_tlkit,
    stop,
    tensorboard_logs,
    tlkit,
    wait_for,
)
from PIL import Image

pytestmark = pytest.mark.slow

MANIFEST = "tlkit-prepared.json"


def _records(path: Path) -> list[dict]:
    """Every record of a local shard, parsed in plain Python (the framing reader tlkit uses for stores)."""
    import tensorflow as tf

    from tlkit.data.tfrecord_io import read_records

    out = []
    with open(path, "rb") as f:
        for raw in read_records(f, str(path)):
            ex = tf.train.Example.FromString(raw).features.feature
            out.append(
                {
                    "image": ex["image"].bytes_list.value[0],
                    "label": ex["label"].int64_list.value[0],
                    "path": ex["path"].bytes_list.value[0].decode(),
                }
            )
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 3-class source with one rotated camera-style photo and one bad file, prepared once at 24 px."""
    root = tmp_path_factory.mktemp("prep")
    src = make_shapes_folder(root / "src", n=10, size=40)
    (src / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    # A landscape photo stored sideways with EXIF orientation 6: upright it is portrait (taller than wide).
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (30, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(src / "bright" / "turned.jpg", quality=95, exif=exif)
    r = tlkit("prepare", "--data", src, "--out", root / "prep", "--size", "24", "--shards", "2", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, src, root / "prep", r


def test_manifest_counts_splits_and_skipped_file_match_the_source(prepared):
    root, src, prep, r = prepared
    m = json.loads((prep / MANIFEST).read_text())
    assert m["classes"] == ["bright", "dark", "stripes"] and m["size"] == [24] and m["quality"] == 90
    assert m["num_shards"] == 4 and [len(e["shards"]) for e in m["splits"].values()] == [2, 2]
    assert [s["path"] for s in m["skipped"]] == [str(src / "dark" / "broken.png")]
    assert "broken.png" in r.stderr  # reported as the preflight reports it
    for e in m["splits"].values():  # files per shard and checksums as written
        for sh in e["shards"]:
            assert len(_records(prep / sh["file"])) == sh["images"]
    # The source's split assignment is kept: its validation files are exactly the validation records.
    from tlkit.data.sources import resolve

    items = resolve(str(src), val_split=0.2, seed=0).items
    usable = items[~items["path"].str.endswith("broken.png")]
    for split in ("train", "val"):
        part = usable[usable["split"] == split]
        assert {row[3] for row in m["splits"][split]["items"]} == set(part["path"])
        assert m["splits"][split]["counts"] == part["label"].value_counts().to_dict()


def _extract(data, out: Path, cwd: Path, env=None):
    r = tlkit(
        "extract", "--base", "cifar_example", "--weights", "none", "--input-size", "32", "32",
        "--layer", "penultimate", "--data", data, "--out", out, "--chunk-rows", "7", "--batch-size", "4",
        cwd=cwd, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_pixels_equal_decode_resize_then_jpeg_within_tolerance(prepared):
    import tensorflow as tf

    from tlkit.data import resize as rs
    from tlkit.data.images import load_rgb

    _, src, prep, _ = prepared
    recs = [rec for f in sorted(prep.glob("*.tfrecord")) for rec in _records(f)]
    turned = next(r for r in recs if r["path"].endswith("turned.jpg"))
    got = tf.io.decode_jpeg(turned["image"]).numpy()
    assert got.shape == (48, 24, 3)  # upright (portrait) with its shorter side 24
    worst = 0.0
    for rec in recs:
        got = tf.io.decode_jpeg(rec["image"]).numpy().astype(np.float32)
        ref = load_rgb(rec["path"])
        h, w = ref.shape[:2]
        size = rs.scaled_size(h, w, 24)
        ref = np.clip(np.round(rs.resize(ref, size).numpy()), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(ref).save(buf, format="JPEG", quality=90)
        ref = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).mean()))
    assert worst < 3.0, worst  # mean absolute difference per pixel, 0..255 scale (two JPEG encoders)


def test_finetune_evaluate_extract_on_the_prepared_folder(prepared):
    root, src, prep, _ = prepared
    m = json.loads((prep / MANIFEST).read_text())
    r = tlkit(
        "finetune",
        "--data",
        prep,
        "--runs-dir",
        root / "runs",
        "--name",
        "p",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        *TINY_RUN,
        cwd=root,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((root / "runs" / "p" / "data_report.json").read_text())
    assert report["class_counts"] == {s: e["counts"] for s, e in m["splits"].items()}
    ev = tlkit("evaluate", root / "runs" / "p", "--json", cwd=root)
    assert ev.returncode == 0, ev.stderr[-3000:]
    got = json.loads(ev.stdout)[str(root / "runs" / "p")]
    assert got["count"] == m["splits"]["val"]["images"]
    assert {c: v["support"] for c, v in got["per_class"].items()} == m["splits"]["val"]["counts"]


def test_extract_reads_every_record_once_with_its_source_path(prepared):
    import pandas as pd

    root, _, prep, _ = prepared
    m = json.loads((prep / MANIFEST).read_text())
    feats = pd.read_parquet(_extract(prep, root / "f.parquet", root))
    assert len(feats) == m["images"] and feats["path"].is_unique
    assert set(feats["path"]) == {row[3] for e in m["splits"].values() for row in e["items"]}
    assert (feats["split"] == "val").sum() == m["splits"]["val"]["images"]


def test_check_data_verifies_shard_checksums_and_an_existing_out_needs_force(prepared, tmp_path):
    import shutil

    root, src, prep, _ = prepared
    ok = tlkit("check-data", prep, cwd=root)
    assert ok.returncode == 0 and "prepared records" in ok.stdout
    again = tlkit("prepare", "--data", src, "--out", prep, "--size", "24", cwd=root)
    assert "--force" in assert_one_line_error(again)
    copy = tmp_path / "copy"
    shutil.copytree(prep, copy)
    shard = sorted(copy.glob("train-*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert "damaged" in assert_one_line_error(tlkit("check-data", copy, cwd=root))


def test_a_killed_prepare_leaves_the_old_folder_and_no_new_manifest_then_force_replaces_it(prepared, tmp_path):
    import shutil

    _, _, prep, _ = prepared
    src = make_shapes_folder(tmp_path / "src", n=20, size=48)
    out = tmp_path / "prep"
    shutil.copytree(prep, out)
    before = (out / MANIFEST).read_bytes()
    args = ("prepare", "--data", src, "--out", out, "--size", "16", "16", "--shard-size", "4", "--force")
    proc = start_tlkit(*args, cwd=tmp_path, log=tmp_path / "log")
    wait_for(lambda: any(tmp_path.glob(".prep.partial-*/*.tfrecord")), timeout=120, proc=proc)
    stop(proc, signal.SIGKILL)
    assert (out / MANIFEST).read_bytes() == before  # the old folder, untouched
    assert [p.parent for p in tmp_path.rglob(MANIFEST)] == [out]  # the partial folder has none
    done = tlkit(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads((out / MANIFEST).read_text())
    assert m["size"] == [16, 16] and m["images"] == 60 and m["num_shards"] == 15  # 48 train + 12 val, 4 per shard
    assert not list(tmp_path.glob(".prep.partial-*"))  # the killed run's partial folder is gone
    assert tlkit("check-data", out, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("scheme", ["s3"])
def test_store_round_trip(object_stores, prepared, scheme):
    """Prepared to s3:// by the command, checked by check-data there, read back as the local folder is."""
    root, src, prep, _ = prepared
    bucket = object_stores.make_bucket(f"{scheme}://tlkit-prep-d")
    env = cli_env(**object_stores.env)
    url = f"{bucket}/shapes"
    up = tlkit("prepare", "--data", src, "--out", url, "--size", "24", "--shards", "2", cwd=root, env=env)
    assert up.returncode == 0, up.stderr[-3000:]
    from tlkit.data import pipeline as tldata
    from tlkit.storage.remote import filesystem

    local = json.loads((prep / MANIFEST).read_text())
    remote = json.loads(filesystem(url).cat_file(f"{url}/{MANIFEST}"))
    assert [sh["sha256"] for e in remote["splits"].values() for sh in e["shards"]] == [
        sh["sha256"] for e in local["splits"].values() for sh in e["shards"]
    ]  # the same bytes as the local prepare (records are deterministic)
    chk = tlkit("check-data", url, cwd=root, env=env)  # reads every shard back for its checksum
    assert chk.returncode == 0 and "prepared records" in chk.stdout, chk.stderr[-2000:]
    # Read through the fsspec framing reader (TFRecordDataset reads no s3://): the same pixels and labels.
    a, b = tldata.resolve(url), tldata.resolve(str(prep))
    assert a.kind == b.kind == "records"
    for split in ("train", "val"):
        got = [
            [np.concatenate(t) for t in zip(*((x.numpy(), y.numpy()) for x, y in ds))]
            for ds in (tldata.make_dataset(s, split, image_size=(24, 24), batch_size=8, training=False) for s in (a, b))
        ]
        assert len(got[0][1]) == local["splits"][split]["images"]
        np.testing.assert_array_equal(got[0][0], got[1][0])
        np.testing.assert_array_equal(got[0][1], got[1][1])


def test_two_workers_each_read_their_own_shard_files_and_count_every_image_once(prepared):
    """--workers 2 on records prepared with --shards 4: worker i opens only shard files i and i+2 of
    each split every epoch, both run the same steps, and each epoch's validation counts every image once."""
    root, src, _, _ = prepared
    prep = root / "prep4"
    r = tlkit("prepare", "--data", src, "--out", prep, "--size", "24", "--shards", "4", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((prep / MANIFEST).read_text())
    names = {s: [sh["file"] for sh in e["shards"]] for s, e in m["splits"].items()}
    assert [len(names[s]) for s in ("train", "val")] == [4, 4]
    opened = root / "opened4"
    opened.mkdir()
    args = ["--data", prep, "--runs-dir", root / "runs4", "--name", "w", "--epochs", "2", "--finetune-epochs", "0"]
    out = tlkit(
        "finetune",
        *args,
        *TINY_RUN,
        "--tensorboard",
        "--workers",
        "2",
        cwd=root,
        env=cli_env(TLKIT_DEBUG_OPENED=str(opened)),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = root / "runs4" / "w"
    assert "2 replica(s) in sync" in (run / "train.log").read_text()
    seen = {}
    for i in range(2):
        for row in (opened / f"opened-worker-{i}.txt").read_text().splitlines():
            tag, path = row.split("\t")
            seen.setdefault((i, tag), []).append(Path(path).name)
    # Each epoch (2), worker i opens its own train shards once; validation too, and after training the
    # chief alone evaluates the whole validation split once more (metrics.json).
    for i in range(2):
        assert sorted(seen[i, "train"]) == sorted(names["train"][i::2] * 2)
    assert sorted(seen[1, "val"]) == sorted(names["val"][1::2] * 2)
    assert sorted(seen[0, "val"]) == sorted(names["val"][0::2] * 2 + names["val"])
    assert set(seen) == {(i, t) for i in range(2) for t in ("train", "val")}
    # Every epoch's validation (summed over the workers) counts each validation image once.
    images = tensorboard_logs(run / "tensorboard")["validation"]["confusion_matrix"]
    assert [s for s, _ in images] == [0, 1]
    for _, png in images:
        assert f"(val split, {m['splits']['val']['images']} images)" in png_title(png)[1]
    assert json.loads((run / "metrics.json").read_text())["count"] == m["splits"]["val"]["images"]
