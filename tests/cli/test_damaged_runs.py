"""Damaged run files are named, not crashed on, through the installed ``tlkit``.

A truncated or garbage checkpoint, a JSON file that is not JSON, a ``labels.json`` that lost a
class, a deleted ``history.csv``: each gives one line naming the file and the fix (exit 2),
before any training, and leaves the folder byte-identical; ``--resume`` with a damaged
``last.keras`` goes on from ``best.keras`` and says so. ``state.json`` records the size and
SHA-256 of what the run wrote, which is how the damage is found.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import TINY_RUN, assert_one_line_error, make_shapes_folder, tlkit

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

ARGS = (*TINY_RUN, "--epochs", "2", "--finetune-epochs", "0", "--quiet")


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished tiny run (2 head epochs), made once; tests copy it."""
    root = tmp_path_factory.mktemp("damaged")
    make_shapes_folder(root / "shapes")
    r = tlkit("finetune", "--data", "shapes", "--name", "done", *ARGS, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    return root


@pytest.fixture()
def ws(tmp_path: Path, finished: Path) -> Path:
    """A copy of the workspace: shapes/ and runs/done."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _unfinish(run: Path, next_epoch: int) -> None:
    """The state of a run stopped in stage 1 after ``next_epoch`` epochs (what --resume continues)."""
    state = json.loads((run / "state.json").read_text())
    state.pop("done")
    state.pop("unfrozen", None)
    state.update(stage=1, stage_start=0, next_epoch=next_epoch)
    (run / "state.json").write_text(json.dumps(state))


def _truncate(path: Path, keep: int = 3000) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_state_records_size_and_sha256_of_what_the_run_wrote(ws):
    run = ws / "runs" / "done"
    files = json.loads((run / "state.json").read_text())["files"]
    assert sorted(files) == sorted(["best.keras", "last.keras", "config.json", "labels.json", "history.csv"])
    for name, rec in files.items():
        data = (run / name).read_bytes()
        assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest(), name


def test_a_checkpoint_that_does_not_load_is_named_by_evaluate_and_export(ws):
    run = ws / "runs" / "done"
    _truncate(run / "best.keras")
    before = snapshot(ws)
    for cmd in (("evaluate", run), ("export", run, "--out", ws / "served", "--quiet")):
        line = assert_one_line_error(tlkit(*cmd, cwd=ws, timeout=180))
        assert f"{run / 'best.keras'} cannot be loaded (3000 bytes, the run recorded" in line, line
        assert "move it away to use last.keras" in line and "File not found" not in line, line
    # Garbage where the only checkpoint should be.
    (run / "best.keras").unlink()
    (run / "last.keras").write_bytes(b"not a model at all\n" * 10)
    line = assert_one_line_error(tlkit("evaluate", run, cwd=ws, timeout=180))
    assert f"{run / 'last.keras'} cannot be loaded" in line and "train the run again with --force" in line, line
    before.pop("runs/done/best.keras")
    before["runs/done/last.keras"] = snapshot(ws)["runs/done/last.keras"]
    assert snapshot(ws) == before


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("state.json", "resume"),
        ("config.json", "resume"),
        ("labels.json", "resume"),
        ("labels.json", "evaluate"),
        ("config.json", "evaluate"),
    ],
)
def test_a_json_file_that_is_not_json_is_named(ws, name, command):
    run = ws / "runs" / "done"
    _unfinish(run, 1)
    (run / name).write_text('{"cut short": [1, 2')
    before = snapshot(ws)
    cmd = ("finetune", "--data", "shapes", "--name", "done", "--resume") if command == "resume" else ("evaluate", run)
    line = assert_one_line_error(tlkit(*cmd, cwd=ws, timeout=180))
    assert line.startswith(f"tlkit {cmd[0]}: error: "), line
    assert f"runs/done/{name} is damaged (not valid JSON: " in line, line
    assert "restore it from a copy" in line, line
    assert snapshot(ws) == before


def test_a_labels_json_that_lost_a_class_is_blamed_not_the_data(ws):
    run = ws / "runs" / "done"
    _unfinish(run, 1)
    (run / "labels.json").write_text(json.dumps(["bright", "dark"]))
    before = snapshot(ws)
    for cmd in (("evaluate", run), ("finetune", "--data", "shapes", "--name", "done", "--resume")):
        line = assert_one_line_error(tlkit(*cmd, cwd=ws, timeout=180))
        assert "runs/done/labels.json was changed after the run wrote it" in line, line
        assert "the data" not in line and "never saw" not in line, line
    # A run from before checksums were recorded: the checkpoint's head size gives it away.
    state = json.loads((run / "state.json").read_text())
    state.pop("files")
    (run / "state.json").write_text(json.dumps(state))
    line = assert_one_line_error(tlkit("evaluate", run, cwd=ws, timeout=180))
    assert f"{run / 'labels.json'} names 2 classes, but best.keras outputs 3" in line, line
    assert snapshot(ws).keys() == before.keys()


def test_resume_with_a_damaged_best_checkpoint_refuses_before_training(ws):
    run = ws / "runs" / "done"
    _unfinish(run, 1)
    _truncate(run / "best.keras")
    before = snapshot(ws)
    t0 = time.monotonic()
    line = assert_one_line_error(tlkit("finetune", "--data", "shapes", "--name", "done", "--resume", cwd=ws))
    assert time.monotonic() - t0 < 60  # refused at once, not after an epoch
    assert "runs/done/best.keras cannot be loaded" in line and "move it away and resume again" in line, line
    assert snapshot(ws) == before


def test_resume_without_history_refuses_instead_of_starting_a_new_one(ws):
    run = ws / "runs" / "done"
    _unfinish(run, 1)
    (run / "history.csv").unlink()
    before = snapshot(ws)
    line = assert_one_line_error(tlkit("finetune", "--data", "shapes", "--name", "done", "--resume", cwd=ws))
    assert "runs/done/history.csv is missing, but the run finished 1 epoch(s)" in line, line
    assert snapshot(ws) == before


def test_resume_with_a_damaged_last_checkpoint_goes_on_from_best_and_says_so(ws):
    run = ws / "runs" / "done"
    _unfinish(run, 2)  # best.keras holds epoch 0 (epoch 1 did not beat it)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert rows[0]["val_accuracy"] >= rows[1]["val_accuracy"]
    _truncate(run / "last.keras")
    r = tlkit("finetune", "--data", "shapes", "--name", "done", "--resume", "--quiet", cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: runs/done/last.keras cannot be loaded"), lines
    assert "resuming from best.keras instead, after epoch 0" in lines[0], lines
    log = (run / "train.log").read_text()
    assert "resuming from best.keras instead, after epoch 0" in log
    assert [int(row["epoch"]) for row in csv.DictReader(open(run / "history.csv"))] == [0, 1]
    assert json.loads((run / "state.json").read_text())["done"] is True
