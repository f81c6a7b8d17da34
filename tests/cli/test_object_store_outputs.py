"""``extract --out`` and ``export --out`` on object stores, through the installed command.

Against a GCS-API emulator and an S3-API server on loopback (the ``object_stores`` fixture): the
features written to ``gs://`` (local runner, and Beam with two workers) hold the rows of a local run;
an export to ``s3://`` holds the local export's files, downloaded and loaded it predicts what the
local one does, and the next export is version 2; a missing bucket is one line, exit 2, before any
model work, with nothing written; a held lock object refuses a second writer.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli_env, make_shapes_folder, tlkit
from test_limits import MAX_PIXELS_AT_EXPORT, tiny_export

pytestmark = pytest.mark.slow

FLAGS = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--seed",
    "3",
    "--input-size",
    "32",
    "32",
    "--layer",
    "penultimate",
)


def _objects(url: str) -> list[str]:
    """Names under ``url`` on the store, relative to it, sorted."""
    from tlkit.storage.remote import filesystem

    fs = filesystem(url)
    fs.invalidate_cache()
    prefix = url.split("://", 1)[1].rstrip("/") + "/"
    return sorted(p.split("://")[-1][len(prefix) :] for p in fs.find(url))


def _download(url: str, dest: Path) -> Path:
    from tlkit.storage.remote import filesystem

    dest.parent.mkdir(parents=True, exist_ok=True)
    filesystem(url).get_file(url, str(dest))
    return dest


def _same_rows(a: Path, b: Path, but: str = "") -> int:
    """Rows of features files ``a`` and ``b`` equal (``but``: a file name in ``b`` only); returns their count."""
    from tlkit.features.store import load_features

    fa, ra, ma = load_features(a)
    fb, rb, mb = load_features(b)
    assert ma == mb
    if but:
        keep = ~rb["path"].str.endswith("/" + but).to_numpy()
        assert (~keep).sum() == 1
        fb, rb = {k: v[keep] for k, v in fb.items()}, rb[keep].reset_index(drop=True)
    ia, ib = ra.sort_values("path").index, rb.sort_values("path").index
    for col in ("path", "label", "label_id", "split"):
        assert list(ra.loc[ia, col]) == list(rb.loc[ib, col])
    np.testing.assert_allclose(fa["penultimate"][ia], fb["penultimate"][ib], rtol=0, atol=1e-5)
    return len(ra)


@pytest.fixture(scope="module")
def features(object_stores, tmp_path_factory) -> dict:
    """A shapes folder (one broken file) extracted to gs:// by both runners; then one image is added and
    the folder extracted locally (19 rows: the remote files' 18 and the one ``--resume`` must add)."""
    root = tmp_path_factory.mktemp("store_extract")
    data = make_shapes_folder(root / "shapes", n=6)
    (data / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bucket = object_stores.make_bucket("gs://wte-features")
    env = cli_env(**object_stores.env)
    plain = tlkit("extract", *FLAGS, "--data", data, "--out", f"{bucket}/plain/f.parquet", cwd=root, env=env)
    beam = tlkit(
        "extract", *FLAGS, "--data", data, "--out", f"{bucket}/beam/f.parquet", "--runner", "beam",
        "--beam-args", "--direct_num_workers=2 --direct_running_mode=multi_processing",
        cwd=root, env=env, timeout=400,
    )  # fmt: skip
    extra = make_shapes_folder(root / "more", n=1, seed=7)
    (extra / "bright" / "0.png").rename(data / "bright" / "new.png")
    local = tlkit("extract", *FLAGS, "--data", data, "--out", root / "local" / "f.parquet", cwd=root, env=env)
    assert local.returncode == 0, local.stderr[-3000:]
    return {"root": root, "data": data, "bucket": bucket, "env": env, "plain": plain, "beam": beam}


def test_extract_to_gs_has_the_rows_of_a_local_run(features, tmp_path):
    plain, bucket, root = features["plain"], features["bucket"], features["root"]
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert f"to {bucket}/plain/f.parquet" in plain.stdout
    # Only the finished file and its list of skipped files: no parts, no temporaries, no lock object.
    assert _objects(f"{bucket}/plain") == ["f.parquet", "f.parquet.skipped.csv"]
    got = _download(f"{bucket}/plain/f.parquet", tmp_path / "plain.parquet")
    assert _same_rows(got, root / "local" / "f.parquet", but="new.png") == 18
    skipped = _download(f"{bucket}/plain/f.parquet.skipped.csv", tmp_path / "skipped.csv").read_text()
    assert skipped == (root / "local" / "f.parquet.skipped.csv").read_text() and "broken.png" in skipped
    assert sorted(p.name for p in root.iterdir()) == ["local", "more", "shapes"]  # nothing staged here


def test_extract_to_gs_on_beam_with_two_workers_has_the_rows_of_a_local_run(features, tmp_path):
    beam, bucket, root = features["beam"], features["bucket"], features["root"]
    assert beam.returncode == 0, beam.stderr[-3000:]
    names = _objects(f"{bucket}/beam")
    shards = [n for n in names if n.startswith("f-")]
    assert shards and all(n.endswith(f"-of-{len(shards):05d}.parquet") for n in shards), names
    assert names == [*shards, "f.parquet.skipped.csv"]  # no temporary prefix, no weights file, no lock
    for s in shards:
        _download(f"{bucket}/beam/{s}", tmp_path / "beam" / s)
    assert _same_rows(tmp_path / "beam" / "f.parquet", root / "local" / "f.parquet", but="new.png") == 18


def test_extract_to_gs_refuses_to_replace_and_resume_adds_only_new_images(features, tmp_path):
    bucket, root, data, env = features["bucket"], features["root"], features["data"], features["env"]
    url = f"{bucket}/plain/f.parquet"
    again = tlkit("extract", *FLAGS, "--data", data, "--out", url, cwd=root, env=env)
    assert "exists; pass --resume" in assert_one_line_error(again)
    res = tlkit("extract", *FLAGS, "--data", data, "--out", url, "--resume", cwd=root, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote 19 rows (1 new" in res.stdout and url in res.stdout
    assert _same_rows(_download(url, tmp_path / "r.parquet"), root / "local" / "f.parquet") == 19


@pytest.fixture(scope="module")
def s3_export(object_stores, tmp_path_factory) -> dict:
    """The shared tiny run exported locally (test_limits.tiny_export), and the same run copied to s3:// and
    exported from its URL to s3:// with the same flags."""
    local = tiny_export(tmp_path_factory)
    bucket = object_stores.make_bucket("s3://wte-models")
    env = cli_env(**object_stores.env)
    run_url = object_stores.upload(Path(local["run"]), f"{bucket}/runs/tiny")  # the run itself on the store too
    res = tlkit(
        "export", run_url, "--out", f"{bucket}/tiny", "--format", "tflite",
        "--max-pixels", str(MAX_PIXELS_AT_EXPORT), "--quiet",
        cwd=tmp_path_factory.mktemp("s3_export"), env=env, timeout=600,
    )  # fmt: skip
    return {"local": local, "bucket": bucket, "env": env, "res": res, "url": f"{bucket}/tiny", "run_url": run_url}


def _serve(version_dir: Path, images: list[bytes]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(image_bytes=tf.constant(images)).items()}


def test_export_to_s3_is_the_local_export_and_loads_back_with_the_same_predictions(s3_export, tmp_path):
    from tlkit.storage.transfer import download_tree

    res, url, local = s3_export["res"], s3_export["url"], Path(s3_export["local"]["path"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"to {url}/1" in res.stdout and f"in {url}/1/tflite" in res.stdout
    local_files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert _objects(url) == [f"1/{f}" for f in local_files]  # card, labels, tflite files: all there, no lock
    assert {"1/saved_model.pb", "1/tlkit.json", "1/assets/labels.txt", "1/tflite/model_int8.tflite"} <= set(
        _objects(url)
    )
    download_tree(f"{url}/1", tmp_path / "1")
    card = json.loads((tmp_path / "1" / "tlkit.json").read_text())
    assert card["source"]["run_dir"] == s3_export["run_url"]  # the run's URL, not its downloaded copy
    assert card["version"] == 1 and card["classes"] == json.loads((local / "tlkit.json").read_text())["classes"]
    images = [p.read_bytes() for p in sorted(Path(s3_export["local"]["data"]).rglob("*.png"))[::5]]
    got, want = _serve(tmp_path / "1", images), _serve(local, images)
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-6)
    assert (got["top_k_labels"] == want["top_k_labels"]).all()


def test_a_missing_bucket_is_one_line_before_any_work_and_nothing_is_written(object_stores, shapes, tmp_path):
    env = cli_env(**object_stores.env)
    work = tmp_path / "work"
    work.mkdir()
    for scheme, cmd in (
        ("gs", ("extract", *FLAGS, "--data", shapes, "--out", "gs://wte-no-such-bucket/f.parquet")),
        ("s3", ("extract", *FLAGS, "--data", shapes, "--out", "s3://wte-no-such-bucket/f.parquet", "--runner", "beam")),
        ("s3", ("export", "--base", "efficientnet_lite0", "--out", "s3://wte-no-such-bucket/models/m")),
        ("gs", ("export", "--base", "efficientnet_lite0", "--out", "gs://wte-no-such-bucket/models/m")),
    ):
        t0 = time.monotonic()
        res = tlkit(*cmd, cwd=work, env=env, timeout=120)
        line = assert_one_line_error(res)
        assert f"{scheme}://wte-no-such-bucket" in line and "does not exist" in line, line
        assert time.monotonic() - t0 < 15  # refused before TensorFlow or a model loads
        assert list(work.iterdir()) == []
    check = tlkit("export", "--check", "s3://wte-no-such-bucket/models/m", cwd=work, env=env, timeout=120)
    assert "--check reads a local export" in assert_one_line_error(check)


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_held_lock_object_refuses_a_second_writer_and_a_dead_holders_is_taken_over(
    object_stores, shapes, tmp_path, scheme
):
    from tlkit.storage.outputs import lock_url, remote_output_lock
    from tlkit.storage.remote import filesystem

    bucket = object_stores.make_bucket(f"{scheme}://wte-locks")
    env = cli_env(**object_stores.env)
    url = f"{bucket}/f.parquet"
    fs = filesystem(url)
    with remote_output_lock(url) as lock:  # this test process holds it
        assert lock == lock_url(url, inside=False) == f"{bucket}/.f.parquet.tlkit.lock"
        res = tlkit("extract", *FLAGS, "--data", shapes, "--out", url, cwd=tmp_path, env=env, timeout=120)
        line = assert_one_line_error(res)
        assert f"PID {os.getpid()} on {socket.gethostname()}" in line and lock in line, line
        with pytest.raises(Exception, match="in use by another tlkit process"):
            with remote_output_lock(url):
                pass
    assert not fs.exists(lock)
    # A lock left by a killed process on this host (its PID is gone) is taken over.
    dead = {"pid": 2**22 + 12345, "host": socket.gethostname(), "since": "then"}
    fs.pipe_file(lock, json.dumps(dead).encode())
    with remote_output_lock(url):
        assert json.loads(fs.cat_file(lock))["pid"] == os.getpid()
    assert not fs.exists(lock)


def _fake_adc(root: Path) -> Path:
    """Application default credentials for the emulator: a user's token that never expires. Beam's GCS
    client asks google.auth for credentials (without any it retries for ~25 s, then goes anonymous);
    the emulator ignores the token, so none is ever refreshed."""
    path = root / "adc.json"
    info = {"type": "authorized_user", "client_id": "x", "client_secret": "x", "refresh_token": "x"}
    path.write_text(json.dumps({**info, "token": "emulator", "expiry": "2099-01-01T00:00:00Z"}))
    return path


def test_beam_cluster_path_reads_and_writes_gs_with_beams_own_file_system(features, object_stores, tmp_path):
    """The Dataflow path (TLKIT_BEAM_REMOTE_IO=1 runs it on the local FnApiRunner, two worker processes):
    images read from gs:// by the workers, weights fetched from a hidden object, shards and the skipped
    list written by Beam's WriteToParquet/WriteToText to gs://; the rows are the local extraction's."""
    pytest.importorskip("apache_beam.io.gcp.gcsfilesystem", reason='needs pip install "tlkit[dataflow]"')
    bucket, root = features["bucket"], features["root"]
    object_stores.upload(features["data"], f"{bucket}/shapes")
    assert len(_objects(f"{bucket}/shapes")) == 20  # 18 images, new.png and broken.png
    env = {**features["env"], "TLKIT_BEAM_REMOTE_IO": "1", "GOOGLE_APPLICATION_CREDENTIALS": str(_fake_adc(tmp_path))}
    out = f"{bucket}/cluster/f.parquet"
    args = ("extract", *FLAGS, "--data", f"{bucket}/shapes", "--out", out, "--runner", "beam",
            "--beam-args", "--direct_num_workers=2 --direct_running_mode=multi_processing")  # fmt: skip
    res = tlkit(*args, cwd=tmp_path, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote 19 rows" in res.stdout and "skipped 1 bad files" in res.stdout, res.stdout
    names = _objects(f"{bucket}/cluster")
    shards = [n for n in names if n.startswith("f-")]
    assert shards and all(n.endswith(f"-of-{len(shards):05d}.parquet") for n in shards), names
    assert names == [*shards, "f.parquet.skipped.csv"]  # no beam-temp files, no weights object, no lock
    # Written by Beam's sink on the bucket (temporaries renamed), not staged here and uploaded by tlkit; the
    # weights object was read back by the workers.
    log = [ln for ln in (object_stores.log_dir / "gcs.log").read_text().splitlines() if "cluster%2F" in ln]
    assert any("cluster%2Fbeam-temp-f-" in ln and "/upload/" in ln for ln in log), log[:20]
    assert any(ln.startswith('"GET') and "cluster%2F.f.parquet.tap_model.weights.h5" in ln for ln in log), log
    for s in shards:
        _download(f"{bucket}/cluster/{s}", tmp_path / "got" / s)
    from tlkit.features.store import load_features

    fg, rg, mg = load_features(tmp_path / "got" / "f.parquet")
    fl, rl, ml = load_features(root / "local" / "f.parquet")
    assert mg.pop("data") == f"{bucket}/shapes" and ml.pop("data") == str(features["data"])
    assert mg == ml
    rg["path"] = rg["path"].str.replace(f"{bucket}/shapes/", "", regex=False)
    rl["path"] = rl["path"].str.replace(f"{features['data']}/", "", regex=False)
    ig, il = rg.sort_values("path").index, rl.sort_values("path").index
    for col in ("path", "label", "label_id", "split"):
        assert list(rg.loc[ig, col]) == list(rl.loc[il, col])
    assert len(ig) == 19
    np.testing.assert_allclose(fg["penultimate"][ig], fl["penultimate"][il], rtol=0, atol=1e-5)
    skipped = _download(f"{out}.skipped.csv", tmp_path / "skipped.csv").read_text().splitlines()
    local_skipped = (root / "local" / "f.parquet.skipped.csv").read_text().splitlines()
    assert skipped[0] == local_skipped[0] and len(skipped) == len(local_skipped) == 2
    assert skipped[1].split(",")[1:] == local_skipped[1].split(",")[1:]  # reason, detail, split, label
    assert skipped[1].startswith(f"{bucket}/shapes/dark/broken.png,")


def test_beam_on_a_cluster_runner_refuses_s3_and_takes_gs(object_stores, shapes, tmp_path):
    res = tlkit(
        "extract", *FLAGS, "--data", shapes, "--out", "s3://wte-features/x/f.parquet", "--runner", "beam",
        "--beam-args=--runner=FlinkRunner --flink_master=localhost:8081",
        cwd=tmp_path, env=cli_env(**object_stores.env), timeout=120,
    )  # fmt: skip
    line = assert_one_line_error(res)
    assert "not FlinkRunner on s3://" in line and "staging folder" in line and "gs://" in line, line
    # gs:// is that runner's cluster path: the lock object's bucket check runs (one line), no refusal.
    res = tlkit(
        "extract", *FLAGS, "--data", shapes, "--out", "gs://wte-no-such-bucket/f.parquet", "--runner", "beam",
        "--beam-args=--runner=DataflowRunner --project=p --region=r --temp_location=gs://wte-no-such-bucket/tmp",
        cwd=tmp_path, env=cli_env(**object_stores.env), timeout=120,
    )  # fmt: skip
    line = assert_one_line_error(res)
    assert "gs://wte-no-such-bucket" in line and "does not exist" in line, line


def test_file_urls_are_local_paths(shapes, tmp_path):
    (tmp_path / "models" / "m" / "1").mkdir(parents=True)
    (tmp_path / "f.parquet").write_bytes(b"x")
    export = tlkit("export", "--base", "efficientnet_lite0", "--out", f"file://{tmp_path}/models/m", "--version", "1",
                   cwd=tmp_path, timeout=120)  # fmt: skip
    assert f"{tmp_path}/models/m/1 already exists" in assert_one_line_error(export)
    extract = tlkit("extract", *FLAGS, "--data", shapes, "--out", f"file://{tmp_path}/f.parquet", cwd=tmp_path)
    assert f"{tmp_path}/f.parquet exists; pass --resume" in assert_one_line_error(extract)
