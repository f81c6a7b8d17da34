"""``tlkit finetune --resume`` gives, bit for bit, what an uninterrupted run gives.

A tiny seeded run with augmentation on (random resized crop, flip, colour jitter), dropout in
the head, 3 steps per epoch, 2 head epochs and 2 epochs with the top block unfrozen and its
BatchNorm scale/offset training (``--train-batchnorm``). It runs once uninterrupted, and once
stopped three times and resumed each time: SIGINT after epoch 0, SIGTERM after epoch 1 (at the
stage switch), SIGKILL in the middle of epoch 3. Both must write the same ``history.csv`` (every
value but the seconds) and the same final weights and optimizer state in ``last.keras``.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_shapes_folder, run_history, run_state, start_tlkit, stop, tlkit, wait_for

ARGS = (
    "finetune",
    "--base",
    "resnet18",
    "--weights",
    "none",
    "--input-size",
    "32",
    "32",
    "--batch-size",
    "8",
    "--seed",
    "0",
    "--lr",
    "1e-2",
    "--epochs",
    "2",
    "--finetune-epochs",
    "2",
    "--unfreeze",
    "1",
    "--train-batchnorm",
    "--quiet",
)

# Whole CLI runs: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def _arrays(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(model weights, optimizer variables) of a ``.keras`` checkpoint."""
    import keras

    from tlkit._keras_objects import register

    register()
    model = keras.saving.load_model(path)
    return model.get_weights(), [np.asarray(v.numpy()) for v in model.optimizer.variables]


# (signal, what it interrupts, the state to wait for, the part of the next epoch to wait then).
# The kill lands half-way through epoch 3's training (timed on the uninterrupted run), not in
# the saving that ends an epoch.
STOPS = [
    (signal.SIGINT, "after epoch 0", lambda s: s.get("next_epoch", 0) >= 1, 0.0),
    (signal.SIGTERM, "after epoch 1", lambda s: s.get("next_epoch", 0) >= 2, 0.0),
    (signal.SIGKILL, "in epoch 3", lambda s: s.get("next_epoch", 0) >= 3, 0.5),
]


def test_stopped_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=8)  # 18 training images: 3 steps of 8, 8, 2
    args = (*ARGS, "--data", str(data))
    full = tlkit(*args, "--name", "full", cwd=tmp_path, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    seconds = [float(r["seconds"]) for r in csv.DictReader(open(tmp_path / "runs" / "full" / "history.csv"))]
    run = tmp_path / "runs" / "stopped"
    for i, (sig, where, reached, part) in enumerate(STOPS):
        proc = start_tlkit(
            *args, "--name", "stopped", *(("--resume",) if i else ()), cwd=tmp_path, log=tmp_path / f"{i}.log"
        )
        wait_for(lambda reached=reached: reached(run_state(run)), 240, proc, every=0.02)
        time.sleep(part * seconds[run_state(run)["next_epoch"]])
        before = run_state(run)["next_epoch"]
        rc = stop(proc, sig)
        # Stopped where meant: the next epoch had not ended yet.
        assert run_state(run)["next_epoch"] == before, (where, run_state(run))
        # SIGINT and SIGTERM keep the work and exit 130 (or 143, SIGTERM's own convention).
        assert rc in {signal.SIGINT: (130,), signal.SIGTERM: (130, 143), signal.SIGKILL: (-9,)}[sig], (where, rc)
    r = tlkit(*args, "--name", "stopped", "--resume", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "train.log").read_text().count("resumed from") == len(STOPS)

    one, two = run_history(tmp_path / "runs" / "full"), run_history(run)
    assert [(r["epoch"], r["stage"]) for r in one] == [("0", "1"), ("1", "1"), ("2", "2"), ("3", "2")]
    assert two == one  # every loss, accuracy and learning rate, to the last printed digit
    weights_one, slots_one = _arrays(tmp_path / "runs" / "full" / "last.keras")
    weights_two, slots_two = _arrays(run / "last.keras")
    assert len(weights_one) == len(weights_two) and len(slots_one) == len(slots_two) > 0
    assert all(np.array_equal(a, b) for a, b in zip(weights_one, weights_two))
    assert all(np.array_equal(a, b) for a, b in zip(slots_one, slots_two))
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (tmp_path / "runs" / "full" / "metrics.json").read_text()
    )
