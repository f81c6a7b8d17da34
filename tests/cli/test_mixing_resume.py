"""``tlkit finetune --label-smoothing --mixup --cutmix``: a tiny run records the options, and a run
killed (SIGKILL) after epoch 0 and resumed has the uninterrupted run's history bit for bit (the
mixing is a function of seed, epoch and batch); combinations that cannot work are refused."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import (
    TINY_RUN,
    assert_one_line_error,
    make_shapes_folder,
    run_history,
    start_tlkit,
    stop,
    tlkit,
    wait_for,
)

# With augmentation (TINY_RUN turns it off): mixing comes after it. Class weights still work.
ARGS = (
    "finetune",
    *(a for a in TINY_RUN if a != "--no-augment"),
    "--epochs",
    "2",
    "--finetune-epochs",
    "0",
    "--label-smoothing",
    "0.1",
    "--mixup",
    "0.2",
    "--cutmix",
    "1.0",
    "--class-weight",
    "auto",
    "--quiet",
)


def _next_epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "state.json").read_text()).get("next_epoch", 0))
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.slow
def test_mixed_run_records_options_and_resumes_bit_exact(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=8)
    args = (*ARGS, "--data", str(data))
    full = tlkit(*args, "--name", "full", cwd=tmp_path, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    config = json.loads((tmp_path / "runs" / "full" / "config.json").read_text())
    assert (config["label_smoothing"], config["mixup"], config["cutmix"]) == (0.1, 0.2, 1.0)

    run = tmp_path / "runs" / "stopped"
    proc = start_tlkit(*args, "--name", "stopped", cwd=tmp_path, log=tmp_path / "stopped.log")
    wait_for(lambda: _next_epoch(run) >= 1, 240, proc, every=0.02)
    assert stop(proc, signal.SIGKILL) == -9 and _next_epoch(run) == 1
    r = tlkit(*args, "--name", "stopped", "--resume", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = run_history(tmp_path / "runs" / "full"), run_history(run)
    assert [row["epoch"] for row in one] == ["0", "1"] and "val_loss" in one[0]
    assert two == one  # every loss, accuracy and rate, to the last printed digit


@pytest.mark.parametrize("flag", ["--mixup", "--cutmix"])
def test_cached_features_cannot_mix_pixels(tmp_path: Path, flag: str):
    r = tlkit("finetune", "--data", str(tmp_path), "--cache-features", flag, "0.2", cwd=tmp_path, timeout=60)
    line = assert_one_line_error(r)
    assert flag in line and "--cache-features" in line
