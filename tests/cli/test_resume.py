"""``tlkit finetune --resume`` from the shell after SIGINT and SIGKILL at several points.

One tiny seeded run (2 head epochs, then 3 with every block unfrozen) is stopped four
times: SIGINT in stage 1, SIGKILL at the stage switch, SIGINT and SIGKILL in stage 2;
each time the same command with ``--resume`` continues it. The finished run must look
like an uninterrupted one: epochs 0..4 once each, the stage switching at epoch 2, every
file present, no lock or temporary file left.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
from conftest import TINY_RUN, run_state, start_tlkit, stop, tlkit, wait_for

HEAD_EPOCHS, FT_EPOCHS = 2, 3
ARGS = (
    "finetune",
    "--data",
    "shapes",
    "--name",
    "r",
    *TINY_RUN,
    "--epochs",
    str(HEAD_EPOCHS),
    "--finetune-epochs",
    str(FT_EPOCHS),
    "--unfreeze",
    "all",
    "--quiet",
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow
FINAL_FILES = [
    "best.keras",
    "last.keras",
    "config.json",
    "labels.json",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion.png",
    "train.log",
    "state.json",
    "data_report.json",
    "data_report.txt",
    "skipped.csv",
]


def _rows(run: Path) -> list[tuple[int, int]]:
    """(epoch, stage) of every complete history row."""
    if not (run / "history.csv").exists():
        return []
    return [(int(r["epoch"]), int(r["stage"])) for r in csv.DictReader(open(run / "history.csv")) if r.get("seconds")]


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith("."))


# (signal, where, the state it waits for). state.json is written only at an epoch's end and at
# the stage switch; each condition holds until the next epoch ends (the switch: until the first
# stage-2 epoch, retracing included, ends), and the check after the stop sees it still holds.
STOPS = [
    (signal.SIGINT, "stage 1, after epoch 0", lambda s: s.get("stage") == 1 and s.get("next_epoch", 0) >= 1),
    (signal.SIGKILL, "the stage switch", lambda s: s.get("stage") == 2 and s.get("next_epoch") == HEAD_EPOCHS),
    (
        signal.SIGINT,
        "stage 2, after epoch 2",
        lambda s: s.get("next_epoch", 0) >= HEAD_EPOCHS + 1 and not s.get("done"),
    ),
    (
        signal.SIGKILL,
        "stage 2, after epoch 3",
        lambda s: s.get("next_epoch", 0) >= HEAD_EPOCHS + 2 and not s.get("done"),
    ),
]


def test_resume_after_sigint_and_sigkill_at_every_point(tmp_path, shapes):
    run = tmp_path / "runs" / "r"
    killed_pid = None
    for i, (sig, where, reached) in enumerate(STOPS):
        proc = start_tlkit(*ARGS, *(("--resume",) if i else ()), cwd=tmp_path, log=tmp_path / f"run{i}.log")
        wait_for(lambda reached=reached: reached(run_state(run)), 180, proc, every=0.02)
        rc = stop(proc, sig)
        state = run_state(run)
        # Each stop landed where it was meant to (the next epoch takes longer than the poll).
        assert reached(state), (where, state)
        rows = _rows(run)
        assert [e for e, _ in rows][: state["next_epoch"]] == list(range(state["next_epoch"])), (where, rows)
        if sig == signal.SIGINT:
            assert rc == 130, (where, rc, (tmp_path / f"run{i}.log").read_text()[-2000:])
            assert _leftovers(run) == [], where  # lock released, temporary files removed
        else:
            assert rc == -signal.SIGKILL
            lock = json.loads((run / ".tlkit.lock").read_text())
            assert lock["pid"] == proc.pid  # left behind by the kill: stale
            killed_pid = proc.pid
            # What a kill in the middle of a save leaves: the next resume removes it.
            (run / ".last.tmp.keras").write_bytes(b"PK\x03\x04 half a zip")
            (run / ".state.json.tmp").write_text('{"stage": ')
    r = tlkit(*ARGS, "--resume", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _rows(run) == [(e, 1 if e < HEAD_EPOCHS else 2) for e in range(HEAD_EPOCHS + FT_EPOCHS)]
    for name in FINAL_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert _leftovers(run) == []
    assert run_state(run)["done"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == HEAD_EPOCHS + FT_EPOCHS and metrics["count"] == 6
    log = (run / "train.log").read_text()
    assert f"took over the lock of PID {killed_pid}" in log
    assert log.count("resumed from") == len(STOPS)
    # Resuming a finished run changes nothing.
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = tlkit(*ARGS, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
