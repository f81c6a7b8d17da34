"""``tlkit finetune --runs-dir s3://...`` (and gs://): published each epoch, locked, resumed after SIGKILL.

One uninterrupted run on the GCS emulator, read back by ``evaluate`` from its URL; and one run on
the S3 server, reading its images from the GCS emulator, that is frozen (SIGSTOP) once its first
epoch is on the store, refused a second process while frozen, killed with SIGKILL, and resumed:
its history (every value but the seconds) and metrics must equal the uninterrupted run's on the
local copy of the images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
from pathlib import Path

import pytest
from conftest import TINY_RUN, assert_one_line_error, cli_env, make_shapes_folder, start_tlkit, tlkit, wait_for

pytestmark = pytest.mark.slow

ARGS = ("finetune", *TINY_RUN, "--epochs", "2", "--finetune-epochs", "0")


def _objects(fs, url: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    prefix = url.split("://", 1)[1]
    return {p[len(prefix) + 1 :]: fs.cat_file(p) for p in fs.find(prefix)}


def _state(fs, url: str) -> dict:
    fs.invalidate_cache()
    try:
        return json.loads(fs.cat_file(f"{url}/state.json"))
    except (FileNotFoundError, ValueError):
        return {}


def _history(raw: bytes) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(io.StringIO(raw.decode()))]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_shapes_folder(tmp_path_factory.mktemp("store-runs") / "shapes", n=8)


@pytest.fixture(scope="module")
def gs_full(object_stores, data, tmp_path_factory) -> tuple[str, dict[str, bytes], str]:
    """(run URL, its objects, stdout) of an uninterrupted run on gs://."""
    from tlkit.storage.remote import filesystem

    tmp = tmp_path_factory.mktemp("gs-full")
    runs = object_stores.make_bucket("gs://b-runs") + "/runs"
    env = cli_env(**object_stores.env, TLKIT_HOME=str(tmp / "home"))
    r = tlkit(*ARGS, "--data", str(data), "--runs-dir", runs, "--name", "g", cwd=tmp, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return f"{runs}/g", _objects(filesystem(runs), f"{runs}/g"), r.stdout


def test_gs_run_is_published_and_evaluate_reads_it_from_its_url(object_stores, data, gs_full, tmp_path):
    from tlkit.storage.remote import filesystem

    url, store, stdout = gs_full
    assert f"published to {url}" in stdout and f"(best.keras); run: {url}\n" in stdout
    assert set(store) == {
        "best.keras", "last.keras", "history.csv", "metrics.json", "state.json", "config.json", "labels.json",
        "train.log", "curves.png", "confusion.png", "data_report.json", "data_report.txt", "skipped.csv",
    }  # fmt: skip
    state = json.loads(store["state.json"])
    assert state["done"] is True and state["next_epoch"] == 2
    for name in ("best.keras", "last.keras", "history.csv"):  # state.json vouches for the objects, byte for byte
        assert state["files"][name]["sha256"] == hashlib.sha256(store[name]).hexdigest()
    assert json.loads(store["config.json"])["runs_dir"] == url.rsplit("/", 1)[0]  # the URL, not the staging copy
    env = cli_env(**object_stores.env, TLKIT_HOME=str(tmp_path / "home"))
    # The run exists: a new finetune on its name is refused, naming the URL, and the store stays as it was.
    again = tlkit(*ARGS, "--data", str(data), "--runs-dir", url.rsplit("/", 1)[0], "--name", "g", cwd=tmp_path, env=env)
    line = assert_one_line_error(again)
    assert f"run directory {url} already exists; pass --resume" in line
    assert _objects(filesystem(url), url) == store
    # export reads a run URL the same way; a URL with no run under it is one line.
    missing = tlkit("export", url + "-nope", cwd=tmp_path, env=env, timeout=120)
    assert f"run directory {url}-nope does not exist" in assert_one_line_error(missing)
    ev = tlkit("evaluate", url, "--json", cwd=tmp_path, env=env, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)[url]
    assert result["count"] == 6 and result["top1"] == pytest.approx(json.loads(store["metrics.json"])["top1"])


def test_s3_run_on_gs_data_killed_after_its_first_epoch_resumes_to_the_uninterrupted_local_data_one(
    object_stores, data, gs_full, tmp_path
):
    from tlkit.storage.remote import filesystem

    # The images on one store (gs://), the run on the other (s3://): the cluster case.
    photos = object_stores.upload(data, object_stores.make_bucket("gs://b-photos") + "/shapes")
    runs = object_stores.make_bucket("s3://b-runs") + "/runs"
    fs = filesystem(runs)
    env = cli_env(**object_stores.env, TLKIT_HOME=str(tmp_path / "home"))
    args = (*ARGS, "--quiet", "--data", photos, "--runs-dir", runs, "--name", "cut")
    url = f"{runs}/cut"
    proc = start_tlkit(*args, cwd=tmp_path, env=env, log=tmp_path / "cut.log")
    try:
        wait_for(lambda: _state(fs, url).get("next_epoch", 0) >= 1, 240, proc, every=0.05)
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen with the lock held, epoch 0 published
        before = _objects(fs, url)
        assert ".tlkit.lock" in before and {"last.keras", "best.keras", "history.csv"} <= set(before)
        state = json.loads(before["state.json"])
        assert state["files"]["last.keras"]["sha256"] == hashlib.sha256(before["last.keras"]).hexdigest()
        # A second process on the same run is refused in one line and changes nothing on the store.
        second = tlkit(*args, "--resume", cwd=tmp_path, env=env, timeout=120)
        line = assert_one_line_error(second)
        assert f"{url} is in use by another tlkit process (PID {proc.pid} on " in line and "--break-lock" in line
        assert _objects(fs, url) == before
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert ".tlkit.lock" in _objects(fs, url)  # left by the kill; its PID is dead on this host

    resumed = tlkit(*args, "--resume", cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    one, two = gs_full[1], _objects(fs, url)
    assert set(two) == set(one)  # the lock object is gone
    assert [r["epoch"] for r in _history(two["history.csv"])] == ["0", "1"]
    assert _history(two["history.csv"]) == _history(one["history.csv"])  # every loss, accuracy, rate
    assert json.loads(two["metrics.json"]) == json.loads(one["metrics.json"])
    assert json.loads(two["state.json"])["done"] is True
    assert two["train.log"].decode().count("resumed from") == 1
    # A lock left by a process on another machine: refused (nothing here can tell it is dead) until --break-lock.
    foreign = {"pid": 1, "host": "another-machine", "time": 0.0, "token": "t"}
    object_stores.upload(_write(tmp_path / "lock", json.dumps(foreign)), f"{url}/.tlkit.lock")
    locked = tlkit(*ARGS, "--data", photos, "--runs-dir", runs, "--name", "cut", "--resume",
                   cwd=tmp_path, env=env)  # fmt: skip
    line = assert_one_line_error(locked)
    assert "in use by another tlkit process (PID 1 on another-machine, since 1970-01-01" in line
    assert "--break-lock" in line
    broken = tlkit(*ARGS, "--data", photos, "--runs-dir", runs, "--name", "cut", "--resume",
                   "--break-lock", cwd=tmp_path, env=env)  # fmt: skip
    assert broken.returncode == 0, broken.stderr[-2000:]
    assert "took over the lock of PID 1 on another-machine" in broken.stdout
    assert f"{url} is complete; nothing to resume" in broken.stdout
    assert _objects(fs, url) == two  # the lock is gone, the run as it was
