"""SIGTERM is handled as Ctrl-C in every long command, through the installed ``tlkit``.

``kill`` and schedulers send SIGTERM. Each command stopped by it mid-work prints one line
naming the signal, exits 143 (128 + SIGTERM, as ``tlkit --help`` documents; 130 after
SIGINT), removes its temporary files and keeps the work done for ``--resume``; finetune's
``train.log`` records the interruption.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
from conftest import TINY_RUN, make_shapes_folder, start_tlkit, stop, tlkit, wait_for

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

SIGTERM_EXIT = 128 + signal.SIGTERM


def _lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.strip()]


def _interrupt_line(log: Path, command: str) -> str:
    """The one line the interrupted command printed (the logs hold stdout and stderr)."""
    lines = _lines(log)
    assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
    assert len(lines) == 1, lines[-20:]
    assert lines[0].startswith(f"tlkit {command}: interrupted (SIGTERM)"), lines
    return lines[0]


def test_help_documents_the_exit_codes(tmp_path):
    r = tlkit("--help", cwd=tmp_path, timeout=60)
    assert r.returncode == 0
    assert "130  interrupted by Ctrl-C (SIGINT)" in r.stdout
    assert "143  interrupted by SIGTERM" in r.stdout


def test_extract_sigterm_keeps_the_chunks_and_resume_finishes(tmp_path):
    data = make_shapes_folder(tmp_path / "shapes", n=20)  # 60 images
    args = ("extract", "--base", "cifar_example", "--weights", "none", "--layer", "penultimate")
    args += ("--chunk-rows", "1", "--batch-size", "1", "--seed", "0", "--data", data)
    out, parts = tmp_path / "f.parquet", tmp_path / "f.parquet.parts"
    proc = start_tlkit(*args, "--out", out, cwd=tmp_path, log=tmp_path / "x.log")
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 3, timeout=180, proc=proc, every=0.05)
    assert stop(proc, signal.SIGTERM) == SIGTERM_EXIT, (tmp_path / "x.log").read_text()[-2000:]
    line = _interrupt_line(tmp_path / "x.log", "extract")
    assert "--resume" in line
    done = len(list(parts.glob("part-*.parquet")))
    assert 3 <= done < 60 and not out.exists()
    assert not [p.name for p in tmp_path.rglob(".*tmp*")]
    r = tlkit(*args, "--out", out, "--resume", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote 60 rows ({60 - done} new" in r.stdout, r.stdout


def test_finetune_sigterm_is_logged_and_resumed_then_export_sigterm_leaves_nothing(tmp_path):
    make_shapes_folder(tmp_path / "shapes")
    args = ("finetune", "--data", "shapes", "--name", "r", *TINY_RUN, "--epochs", "3", "--finetune-epochs", "0")
    run = tmp_path / "runs" / "r"

    def epochs_done() -> int:
        try:
            return json.loads((run / "state.json").read_text()).get("next_epoch", 0)
        except (OSError, ValueError):
            return 0

    proc = start_tlkit(*args, "--quiet", cwd=tmp_path, log=tmp_path / "ft.log")
    wait_for(lambda: epochs_done() >= 1, timeout=180, proc=proc, every=0.05)
    assert stop(proc, signal.SIGTERM) == SIGTERM_EXIT, (tmp_path / "ft.log").read_text()[-2000:]
    _interrupt_line(tmp_path / "ft.log", "finetune")
    done = epochs_done()
    assert 1 <= done < 3
    log_tail = (run / "train.log").read_text().splitlines()[-1]
    assert f"interrupted by SIGTERM after {done} finished epoch(s)" in log_tail, log_tail
    assert not (run / ".tlkit.lock").exists() and not [p for p in run.iterdir() if ".tmp" in p.name]

    r = tlkit(*args, "--resume", "--quiet", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [int(row["epoch"]) for row in csv.DictReader(open(run / "history.csv"))] == [0, 1, 2]

    # export: stopped while it builds or verifies the SavedModel (its temporary folder exists).
    out = tmp_path / "served"
    proc = start_tlkit("export", run, "--out", out, "--quiet", cwd=tmp_path, log=tmp_path / "ex.log")
    wait_for(lambda: out.is_dir() and any(out.iterdir()), timeout=240, proc=proc, every=0.02)
    assert stop(proc, signal.SIGTERM) == SIGTERM_EXIT, (tmp_path / "ex.log").read_text()[-2000:]
    assert _interrupt_line(tmp_path / "ex.log", "export") == "tlkit export: interrupted (SIGTERM)"
    # Nothing is left: no version, no temporary folder, and the --out folder the export created
    # for its lock is removed again once empty.
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], sorted(out.iterdir())
