"""The pictures a run and `tlkit evaluate --out` write state what they show: the confusion matrix's
title gives the accuracy the command prints and the split, the curves mark the kept epoch (issue 19).
Each picture stores its title as the PNG's Title text, which these tests read."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import TINY_RUN, tlkit
from PIL import Image

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def _title(path: Path) -> str:
    with Image.open(path) as im:
        return im.info["Title"]


def test_run_and_evaluate_confusion_titles_state_accuracy_and_split(tmp_path: Path, shapes: Path):
    run = tmp_path / "runs" / "r"
    result = tlkit("finetune", "--data", shapes, *TINY_RUN, "--epochs", "2", "--name", "r", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    count = sum(sum(row) for row in metrics["confusion_matrix"])
    lines = _title(run / "confusion.png").splitlines()
    assert f"accuracy {metrics['top1']:.4f} ({metrics['split']} split, {count} images)" in lines, lines
    assert metrics["split"] == "val"

    ev = tlkit("evaluate", run, "--out", "ev", "--split", "train", cwd=tmp_path, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    printed = float(re.search(r"top-1 ([\d.]+)", ev.stdout).group(1))
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    (entry,) = report.values()
    lines = _title(tmp_path / "ev" / "confusion_r.png").splitlines()
    assert f"accuracy {printed:.4f} (train split, {entry['count']} images)" in lines, lines
    assert "r, tta=none" in lines

    # The curves mark the epoch best.keras holds: the first with the best validation accuracy.
    rows = list(csv.DictReader(open(run / "history.csv")))
    accs = [float(r["val_accuracy"]) for r in rows]
    kept = 1 + accs.index(max(accs))
    assert json.loads((run / "state.json").read_text())["best"] == pytest.approx(max(accs))
    assert _title(run / "curves.png").splitlines()[-1] == f"kept checkpoint: epoch {kept}"
