"""What a run records per epoch: checkpoints, ``history.csv`` rows and ``state.json``.

:class:`RunRecorder` is the callback that writes them in an order a kill cannot break (best
checkpoint, history row, last checkpoint, then the state that vouches for them); the history
and state helpers read them back for a resume, and :func:`save_checkpoint` writes any ``.keras``
file atomically. The training loop (:mod:`tlkit.finetune.train`) adds the recorder to each stage.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from tlkit._io import atomic_path
from tlkit.finetune.rundir import BEST, HISTORY, LAST, RunDir

HISTORY_FIELDS = ["epoch", "stage", "lr", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]
# A multi-label run's columns (tlkit.finetune.multilabel), after the others; absent from a single-label history.
MULTI_LABEL_FIELDS = ["f1", "pr_auc", "val_f1", "val_pr_auc"]
# A segmentation run's columns (tlkit.segment), likewise.
SEGMENT_FIELDS = ["mean_iou", "val_mean_iou"]


def _fields(path: Path, row: dict | None = None) -> list[str]:
    """The columns of ``path`` (its header), else those of a new file for ``row``."""
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), None)
        if header:
            return header
    extra = [k for k in MULTI_LABEL_FIELDS + SEGMENT_FIELDS if row and row.get(k) is not None]
    return HISTORY_FIELDS + extra


def save_checkpoint(model: keras.Model, path: Path) -> None:
    """Save a ``.keras`` file atomically: a kill mid-write never leaves a broken checkpoint.

    The temporary file goes on any failure or interrupt; one left by a kill is removed by
    the next run or resume (:meth:`tlkit.finetune.rundir.RunDir.clean_temp`).
    """
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


class EpochEndHook(keras.callbacks.Callback):
    """Calls ``fn()`` at the end of every epoch (after the run recorder's checkpoint)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.fn()


class RunRecorder(keras.callbacks.Callback):
    """Per epoch, in this order: best checkpoint, history row, last checkpoint, state.

    The state file is written last, so after a kill at any point the state never
    claims an epoch whose checkpoint or history row is missing; on resume, history
    rows past the state are dropped (no duplicates) and training restarts right
    after the last completed epoch (no gaps).
    """

    def __init__(
        self,
        run_dir: Path,
        stage: int,
        stage_start: int,
        monitor: str = "val_accuracy",
        best_so_far: float | None = None,
        extra_state: dict | None = None,
        checkpoint_model: keras.Model | None = None,
    ) -> None:
        super().__init__()
        # The model to checkpoint, when training runs on a part of it (a head on cached features).
        self.checkpoint_model = checkpoint_model
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.stage_start = stage_start
        self.monitor = monitor
        self.best = best_so_far
        self.extra_state = extra_state or {}
        self._t0 = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        ckpt = self.checkpoint_model or self.model
        value = logs.get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            from tlkit.finetune.ema import ema_weights

            with ema_weights(self.model):  # --ema: best.keras holds the averaged weights as its weights
                save_checkpoint(ckpt, self.run_dir / BEST)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch, "stage": self.stage, "lr": lr, "seconds": round(time.time() - self._t0, 3)}
        row.update({k: float(logs[k]) for k in HISTORY_FIELDS + MULTI_LABEL_FIELDS + SEGMENT_FIELDS if k in logs})
        append_history(self.run_dir / HISTORY, row)
        # last.keras just before the state: a kill between the two leaves last.keras an epoch ahead of
        # the state, which a resume cannot replay exactly; a kill before it replays the epoch exactly.
        save_checkpoint(ckpt, self.run_dir / LAST)
        write_state(
            self.run_dir,
            {
                **self.extra_state,
                "stage": self.stage,
                "next_epoch": epoch + 1,
                "stage_start": self.stage_start,
                "best": self.best,
            },
        )


def append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    fields = _fields(path, row)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in fields})
        f.flush()
        os.fsync(f.fileno())


def read_history(path: Path) -> list[dict[str, Any]]:
    """History rows with numbers parsed; empty cells become None."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        try:
            out.append(
                {
                    k: (None if v in ("", None) else (int(v) if k in ("epoch", "stage") else float(v)))
                    for k, v in r.items()
                }
            )
        except (TypeError, ValueError):
            continue  # a row cut short by a kill mid-write: the state never vouched for it
    return out


def truncate_history(path: Path, next_epoch: int) -> None:
    """Drop rows of epochs that the state does not vouch for (killed between row and state)."""
    path = Path(path)
    rows = [r for r in read_history(path) if r["epoch"] < next_epoch]
    fields = _fields(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:  # a kill leaves the old history
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})


def write_state(run_dir: Path, state: dict) -> None:
    """``state.json`` (atomic): the next epoch, the stage and its start, the best score so far."""
    RunDir(run_dir).write_state(state)


def read_state(run_dir: Path) -> dict:
    return RunDir(run_dir).read_state()
