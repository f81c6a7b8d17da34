"""Run directories that cannot lose work, driven through the installed ``tlkit finetune``.

Each test checks values on disk: every file's bytes before and after (nothing created,
deleted or changed where a command was refused), the lock's owner, the run put back.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import (
    TINY_RUN,
    assert_one_line_error,
    cli_env,
    make_shapes_folder,
    start_tlkit,
    stop,
    tlkit,
    wait_for,
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

ONE_EPOCH = (*TINY_RUN, "--epochs", "1", "--finetune-epochs", "0", "--quiet")


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under ``root``: relative path -> content hash ("dir" for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished tiny run (1 epoch), made once; tests copy it."""
    root = tmp_path_factory.mktemp("finished")
    make_shapes_folder(root / "shapes")
    r = tlkit("finetune", "--data", "shapes", "--name", "done", *ONE_EPOCH, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    return root / "runs" / "done"


@pytest.fixture()
def workspace(tmp_path: Path, shapes: Path, finished_run: Path) -> Path:
    """tmp_path with shapes/, runs/myrun (a finished run), runs/other (another run), runs/notes.txt."""
    shutil.copytree(finished_run, tmp_path / "runs" / "myrun")
    shutil.copytree(finished_run, tmp_path / "runs" / "other")
    (tmp_path / "runs" / "notes.txt").write_text("my notes: do not delete\n")
    return tmp_path


def _column(path: Path, name: str) -> list[str]:
    return [row[name] for row in csv.DictReader(open(path))]


def hidden_siblings(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if p.name.startswith("."))


def test_force_with_missing_data_leaves_the_old_run_byte_identical(workspace):
    before = snapshot(workspace)
    r = tlkit("finetune", "--data", "./typo", "--name", "myrun", "--force", *ONE_EPOCH, cwd=workspace)
    assert "typo" in assert_one_line_error(r)
    assert snapshot(workspace) == before


def test_refusals_before_anything_starts(workspace):
    """Bad names, a folder that is not a run, --runs-dir on a file, no epochs, --resume with
    other data or base: each one line, exit 2, and not one byte changed anywhere."""
    user = workspace / "runs" / "holiday"
    user.mkdir()
    (user / "photo.txt").write_text("not a run")
    absolute = workspace / "elsewhere"
    before = snapshot(workspace)
    for name in (".", "..", "../x", str(absolute), "a/b", "", ".hidden"):
        r = tlkit("finetune", "--data", "shapes", "--name", name, "--force", *ONE_EPOCH, cwd=workspace)
        line = assert_one_line_error(r)
        assert repr(name) in line and "one folder name" in line, line
    line = assert_one_line_error(
        tlkit("finetune", "--data", "shapes", "--name", "holiday", "--force", *ONE_EPOCH, cwd=workspace)
    )
    assert "not a tlkit run" in line and "photo.txt" in line
    line = assert_one_line_error(
        tlkit("finetune", "--data", "shapes", "--runs-dir", "runs/notes.txt", *ONE_EPOCH, cwd=workspace)
    )
    assert "runs/notes.txt is a file" in line
    line = assert_one_line_error(
        tlkit(
            "finetune",
            "--data",
            "shapes",
            "--name",
            "new",
            *TINY_RUN,
            "--epochs",
            "0",
            "--finetune-epochs",
            "0",
            cwd=workspace,
        )
    )
    assert "nothing to train" in line and "--epochs 0" in line
    line = assert_one_line_error(tlkit("finetune", "--data", "otherdata", "--name", "myrun", "--resume", cwd=workspace))
    assert "--data shapes" in line and "--data otherdata" in line
    line = assert_one_line_error(
        tlkit("finetune", "--data", "shapes", "--base", "lenet5", "--name", "myrun", "--resume", cwd=workspace)
    )
    assert "--base cifar_example" in line and "--base lenet5" in line
    line = assert_one_line_error(tlkit("finetune", "--data", "shapes", "--name", "myrun", *ONE_EPOCH, cwd=workspace))
    assert "already exists" in line and "--resume" in line and "--force" in line
    assert snapshot(workspace) == before
    assert not absolute.exists() and not (workspace / "x").exists()


def test_failed_run_does_not_block_the_retry_and_a_second_run_on_the_name_is_refused(tmp_path, shapes):
    run = tmp_path / "runs" / "busy"
    bad = tmp_path / "bad"
    shutil.copytree(shapes / "bright", bad / "bright")  # one class: not a classification problem
    r = tlkit("finetune", "--data", "bad", "--name", "busy", *ONE_EPOCH, cwd=tmp_path)
    assert "one class" in assert_one_line_error(r)
    assert not (tmp_path / "runs").exists()  # the data is checked before the run folder is made
    # The retry with good data starts (no "already exists"), and holds the run while it trains.
    first = start_tlkit(
        "finetune",
        "--data",
        "shapes",
        "--name",
        "busy",
        *TINY_RUN,
        "--epochs",
        "50",
        "--finetune-epochs",
        "0",
        "--quiet",
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: (run / "history.csv").is_file(), 120, first)
        lock = json.loads((run / ".tlkit.lock").read_text())
        assert lock == {"pid": first.pid, "host": socket.gethostname()}
        for extra in ((), ("--force",), ("--resume",)):
            line = assert_one_line_error(
                tlkit("finetune", "--data", "shapes", "--name", "busy", *ONE_EPOCH, *extra, cwd=tmp_path)
            )
            assert f"PID {first.pid}" in line and "in use" in line, line
        assert first.poll() is None and run.is_dir() and hidden_siblings(run.parent) == []
    finally:
        rc = stop(first, signal.SIGINT)
    assert rc == 130
    assert not (run / ".tlkit.lock").exists()  # released on interrupt
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_force_puts_the_old_run_back_when_the_new_one_stops_before_its_first_checkpoint(workspace, sig):
    runs = workspace / "runs"
    before = snapshot(workspace)
    proc = start_tlkit(
        "finetune",
        "--data",
        "shapes",
        "--name",
        "myrun",
        "--force",
        *TINY_RUN,
        "--epochs",
        "3",
        "--finetune-epochs",
        "0",
        "--quiet",
        cwd=workspace,
    )
    # The old run is aside, the new one has its lock and config but no checkpoint yet.
    wait_for(
        lambda: (
            (runs / ".myrun.tlkit-replaced").is_dir()
            and (runs / "myrun" / ".tlkit.lock").is_file()
            and not (runs / "myrun" / "last.keras").exists()
        ),
        120,
        proc,
        every=0.02,
    )
    rc = stop(proc, sig)
    if sig == signal.SIGINT:
        assert rc == 130
    else:
        assert rc == -signal.SIGKILL and (runs / ".myrun.tlkit-replaced").is_dir()
        # The next command on the name puts the old run back (here: a resume of a finished run).
        r = tlkit("finetune", "--data", "shapes", "--name", "myrun", "--resume", "--quiet", cwd=workspace)
        assert r.returncode == 0, r.stderr[-2000:]
    assert snapshot(workspace) == before
    assert hidden_siblings(runs) == []


def test_force_replaces_a_finished_run_once_the_new_one_has_a_checkpoint(workspace):
    runs = workspace / "runs"
    old_log = (runs / "myrun" / "train.log").read_text()
    other = snapshot(runs / "other")
    r = tlkit(
        "finetune",
        "--data",
        "shapes",
        "--name",
        "myrun",
        "--force",
        *TINY_RUN,
        "--epochs",
        "2",
        "--finetune-epochs",
        "0",
        "--quiet",
        cwd=workspace,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert [int(x) for x in _column(runs / "myrun" / "history.csv", "epoch")] == [0, 1]
    assert old_log not in (runs / "myrun" / "train.log").read_text()
    assert hidden_siblings(runs) == [] and snapshot(runs / "other") == other
    assert (runs / "notes.txt").read_text() == "my notes: do not delete\n"


def test_checkpoints_load_in_a_fresh_process_after_import_tlkit(finished_run):
    code = textwrap.dedent(f"""
        import sys
        import tlkit
        assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "import tlkit must stay light"
        import keras
        # Every custom object tlkit saves is registered by the import of keras alone.
        for obj in ("Preprocess", "LocalResponseNormalization", "PatchConv2D"):
            assert keras.saving.get_registered_object("tlkit>" + obj) is not None, obj
        for name in ("best.keras", "last.keras"):
            model = keras.saving.load_model({str(finished_run)!r} + "/" + name)
            print(name, type(model.get_layer("preprocess")).__module__, model.output_shape[-1])
    """)
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=cli_env(), check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [
        "best.keras",
        "tlkit.models.preprocessing",
        "3",
        "last.keras",
        "tlkit.models.preprocessing",
        "3",
    ]
