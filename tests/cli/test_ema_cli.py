"""``tlkit finetune --ema DECAY`` as the user runs it: refused values, what the run keeps, and a
SIGKILLed run resumed bit for bit, the average and its update count included."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_RUN,
    assert_one_line_error,
    make_shapes_folder,
    run_history,
    run_state,
    start_tlkit,
    stop,
    tlkit,
    wait_for,
)

ARGS = (*TINY_RUN, "--epochs", "2", "--finetune-epochs", "1", "--unfreeze", "1", "--ema", "0.9", "--quiet")


def test_bad_decay_and_cache_features_are_refused_in_one_line(tmp_path):
    for bad in ("1", "1.5", "0"):
        line = assert_one_line_error(tlkit("finetune", "--data", "x", *TINY_RUN, "--ema", bad, cwd=tmp_path))
        assert "--ema" in line
    line = assert_one_line_error(
        tlkit("finetune", "--data", "x", *TINY_RUN, "--ema", "0.99", "--cache-features", cwd=tmp_path)
    )
    assert "--ema with --cache-features" in line
    assert not (tmp_path / "runs").exists()


def _load(path: Path):
    import keras

    from tlkit._keras_objects import register

    register()
    return keras.saving.load_model(path)


def _arrays(model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return model.get_weights(), [np.asarray(v.numpy()) for v in model.optimizer.variables]


@pytest.mark.slow
def test_ema_run_keeps_the_average_and_resumes_bit_for_bit(tmp_path):
    from tlkit.finetune import ema

    data = make_shapes_folder(tmp_path / "shapes", n=8)  # 18 training images: 3 steps per epoch
    args = ("finetune", *ARGS, "--data", str(data))
    full = tlkit(*args, "--name", "full", cwd=tmp_path, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    one = tmp_path / "runs" / "full"
    last = _load(one / "last.keras")
    # One EMA across the run: stage 2's optimizer went on counting from stage 1's 6 updates.
    assert ema.updates(last) == 9
    # last.keras: the raw weights of the unfrozen block and the head, their average in the optimizer.
    raw, average = [np.asarray(v.numpy()) for v in last.trainable_variables], ema.averages(last)
    assert len(average) == len(raw) > 2
    assert all(np.abs(r - a).max() > 1e-6 for r, a in zip(raw, average))
    # metrics.json evaluated best.keras: the EMA-validated epoch's accuracy.
    metrics = json.loads((one / "metrics.json").read_text())
    assert metrics["checkpoint"] == "best.keras" and metrics["top1"] == pytest.approx(run_state(one)["best"])

    # SIGKILL after epoch 0 (in epoch 1), then after epoch 1 (at the stage switch: stage 2 must start
    # from the EMA weights also when the resume does not run stage 1's fit), resumed each time.
    run = tmp_path / "runs" / "stopped"
    for i, done in enumerate((1, 2)):
        resume = ("--resume",) if i else ()
        proc = start_tlkit(*args, "--name", "stopped", *resume, cwd=tmp_path, log=tmp_path / f"{i}.log")
        wait_for(lambda done=done: run_state(run).get("next_epoch", 0) >= done, 240, proc, every=0.02)
        assert stop(proc, signal.SIGKILL) == -9
    r = tlkit(*args, "--name", "stopped", "--resume", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "train.log").read_text().count("resumed from") == 2
    assert run_history(run) == run_history(one)
    (w1, o1), (w2, o2) = _arrays(last), _arrays(_load(run / "last.keras"))
    assert len(w1) == len(w2) and len(o1) == len(o2) > 0
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert all(np.array_equal(a, b) for a, b in zip(o1, o2))  # Adam's slots, the average, its count
    assert json.loads((run / "metrics.json").read_text()) == metrics
