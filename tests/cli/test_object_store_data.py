"""``--data`` on a bucket, as a user runs it: ``tlkit finetune`` on ``gs://``, ``evaluate``, ``check-data``
and ``predict`` on ``s3://``, each giving what the same data on disk gives (loopback GCS emulator and
S3 server, tests/object_stores.py); a missing bucket or refused access is one line and exit 2."""

import json
from pathlib import Path

import pytest
from conftest import TINY_RUN, assert_one_line_error, cli_env, make_shapes_folder, tlkit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, object_stores):
    """One tiny finetune from gs:// (the shapes folder uploaded to both stores)."""
    work = tmp_path_factory.mktemp("a-object-store-data")
    local = work / "shapes"  # train/ and val/ folders: evaluate --split val then reads the run's validation files
    make_shapes_folder(local / "train", n=6)
    make_shapes_folder(local / "val", n=2, seed=1)
    urls = {}
    for scheme in ("gs", "s3"):
        bucket = object_stores.make_bucket(f"{scheme}://a-cli-data")
        urls[scheme] = object_stores.upload(local, f"{bucket}/shapes")
    env = cli_env(**object_stores.env, TLKIT_HOME=str(work / "tlkit-home"))
    res = tlkit(
        "finetune",
        "--data",
        urls["gs"],
        *TINY_RUN,
        "--epochs",
        "10",  # enough for the tiny model to tell two of the classes apart: its metrics below are not constant
        "--finetune-epochs",
        "0",
        "--runs-dir",
        work / "runs",
        "--name",
        "remote",
        cwd=work,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return {"work": work, "local": local, "urls": urls, "env": env, "run": work / "runs" / "remote"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _local_counts(folder: Path) -> dict:
    from tlkit.data import pipeline as tldata
    from tlkit.data import preflight

    return preflight.check(tldata.resolve(str(folder)), progress=False, cache=False).class_counts


def test_finetune_from_gs_records_the_url_and_counts_as_on_disk(runs):
    run = runs["run"]
    assert _json(run / "config.json")["data"] == runs["urls"]["gs"]  # the URL as given, not a path
    report = _json(run / "data_report.json")
    assert report["spec"] == runs["urls"]["gs"] and report["n_files"] == 24 and not report["bad_files"]
    assert report["class_counts"] == _local_counts(runs["local"])  # same files, same seeded split
    assert _json(run / "metrics.json")["count"] == sum(report["class_counts"]["val"].values())


def test_evaluate_and_check_data_on_s3(runs):
    run, env, work = runs["run"], runs["env"], runs["work"]
    res = tlkit(
        "evaluate", run, "--data", runs["urls"]["s3"], "--split", "val", "--json", cwd=work, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (got,) = json.loads(res.stdout).values()
    # The same validation files read from the other store give the run's own validation metrics.
    metrics = _json(run / "metrics.json")
    assert len({tuple(row) for row in metrics["confusion_matrix"]}) > 1  # not one class for every image
    assert (got["count"], got["top1"], got["per_class"]) == (metrics["count"], metrics["top1"], metrics["per_class"])
    res = tlkit("check-data", runs["urls"]["s3"] + "/", "--json", cwd=work, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["class_counts"] == _local_counts(runs["local"])


def test_predict_reads_images_from_s3_as_from_disk(runs):
    names = ["bright/0.png", "stripes/3.png"]
    images = [f"{runs['urls']['s3']}/train/{n}" for n in names] + [str(runs["local"] / "train" / n) for n in names]
    res = tlkit("predict", *images, "--json", "--top", "3", cwd=runs["work"], env=runs["env"], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout)["results"]
    assert [r["image"] for r in results] == images
    assert [r["predictions"] for r in results[:2]] == [r["predictions"] for r in results[2:]]


def test_a_missing_bucket_or_object_and_refused_access_are_one_line(runs, object_stores):
    work, env = runs["work"], runs["env"]
    line = assert_one_line_error(tlkit("check-data", "s3://a-no-such-bucket/shapes", cwd=work, env=env, timeout=120))
    assert "s3://a-no-such-bucket/shapes" in line and "not found" in line
    res = tlkit("predict", "gs://a-cli-data/shapes/train/bright/nothing.png", cwd=work, env=env, timeout=120)
    assert "gs://a-cli-data/shapes/train/bright/nothing.png: missing" in assert_one_line_error(res)
    bucket = object_stores.make_bucket("s3://a-cli-denied")
    object_stores.upload(runs["local"], f"{bucket}/shapes")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a-cli-denied/*"}
        ],
    }
    import boto3

    boto3.client("s3", endpoint_url=object_stores.s3_endpoint).put_bucket_policy(
        Bucket="a-cli-denied", Policy=json.dumps(policy)
    )
    line = assert_one_line_error(tlkit("check-data", f"{bucket}/shapes", cwd=work, env=env, timeout=120))
    assert "refused access" in line and "a-cli-denied" in line
    res = tlkit("finetune", "--data", runs["urls"]["gs"], "--cache", "s3://a-cli-data/c", *TINY_RUN, cwd=work, env=env)
    assert "--cache s3://a-cli-data/c" in assert_one_line_error(res)
