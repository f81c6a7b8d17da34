"""Staged finetuning: train the new head on a frozen base, then unfreeze the top blocks at a lower rate.

This module knows Keras training (optimizers, schedules, callbacks, resume) but
not where data comes from; :mod:`tlkit.pipeline` wires data, model and run directory.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import keras
import numpy as np

from tlkit.errors import ConfigError
from tlkit.rundir import BEST, HISTORY, LAST, RunDir

HISTORY_FIELDS = ["epoch", "stage", "lr", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
                  "val_top5", "seconds"]


@dataclass
class StageConfig:
    """One stage of training: which epochs, which optimizer and schedule."""

    stage: int
    epochs: int  # epochs in this stage
    lr: float
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"  # "none" | "step" | "plateau" | "cosine"
    step_epochs: int = 10  # step decay: divide by 10 every step_epochs
    early_stopping: int = 0  # patience in epochs; 0 = off


def make_optimizer(cfg: StageConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum (the AlexNet/ResNet recipe) or Adam, with decoupled weight decay."""
    wd = cfg.weight_decay or None
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.lr, weight_decay=wd)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'")


def compile_model(model: keras.Model, cfg: StageConfig, num_classes: int) -> None:
    """(Re)compile after changing ``trainable``: Keras fixes the trainable set at compile time."""
    metrics: list[Any] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    model.compile(optimizer=make_optimizer(cfg), loss="sparse_categorical_crossentropy", metrics=metrics)


def schedule_lr(cfg: StageConfig, epoch_in_stage: int) -> float:
    """Learning rate of an epoch under the step or cosine schedule (plateau is a callback)."""
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** (epoch_in_stage // max(cfg.step_epochs, 1))
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch_in_stage / max(cfg.epochs, 1)))
    if cfg.schedule in ("none", "plateau"):
        return cfg.lr
    raise ConfigError(f"unknown schedule {cfg.schedule!r}; use none, step, plateau or cosine")


def save_checkpoint(model: keras.Model, path: Path) -> None:
    """Save a ``.keras`` file atomically: a kill mid-write never leaves a broken checkpoint.

    The temporary file goes on any failure or interrupt; one left by a kill is removed by
    the next run or resume (:meth:`tlkit.rundir.RunDir.clean_temp`).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class EpochEndHook(keras.callbacks.Callback):
    """Calls ``fn()`` at the end of every epoch (after the run recorder's checkpoint)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.fn()


class RunRecorder(keras.callbacks.Callback):
    """Per epoch, in this order: last checkpoint, best checkpoint, history row, state.

    The state file is written last, so after a kill at any point the state never
    claims an epoch whose checkpoint or history row is missing; on resume, history
    rows past the state are dropped (no duplicates) and training restarts right
    after the last completed epoch (no gaps).
    """

    def __init__(self, run_dir: Path, stage: int, stage_start: int, monitor: str = "val_accuracy",
                 best_so_far: float | None = None, extra_state: dict | None = None,
                 checkpoint_model: keras.Model | None = None) -> None:
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
        save_checkpoint(ckpt, self.run_dir / LAST)
        value = logs.get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            save_checkpoint(ckpt, self.run_dir / BEST)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch, "stage": self.stage, "lr": lr, "seconds": round(time.time() - self._t0, 3)}
        row.update({k: float(logs[k]) for k in HISTORY_FIELDS if k in logs})
        append_history(self.run_dir / HISTORY, row)
        write_state(self.run_dir, {**self.extra_state, "stage": self.stage, "next_epoch": epoch + 1,
                                   "stage_start": self.stage_start, "best": self.best})


def append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
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
            out.append({k: (None if v in ("", None) else (int(v) if k in ("epoch", "stage") else float(v)))
                        for k, v in r.items()})
        except (TypeError, ValueError):
            continue  # a row cut short by a kill mid-write: the state never vouched for it
    return out


def truncate_history(path: Path, next_epoch: int) -> None:
    """Drop rows of epochs that the state does not vouch for (killed between row and state)."""
    path = Path(path)
    rows = [r for r in read_history(path) if r["epoch"] < next_epoch]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_FIELDS})
    os.replace(tmp, path)  # a kill mid-rewrite leaves the old history, never a partial one


def write_state(run_dir: Path, state: dict) -> None:
    """``state.json`` (atomic): the next epoch, the stage and its start, the best score so far."""
    RunDir(run_dir).write_state(state)


def read_state(run_dir: Path) -> dict:
    return RunDir(run_dir).read_state()


def stage_callbacks(cfg: StageConfig, run_dir: Path, stage_start: int, best: float | None,
                    extra: Iterable[keras.callbacks.Callback] = (), has_val: bool = True,
                    extra_state: dict | None = None,
                    checkpoint_model: keras.Model | None = None) -> list[keras.callbacks.Callback]:
    """Schedules, early stopping and the run recorder for one stage."""
    cbs: list[keras.callbacks.Callback] = []
    if cfg.schedule in ("step", "cosine"):
        cbs.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, lr: schedule_lr(cfg, epoch - stage_start)))
    elif cfg.schedule == "plateau":
        # Divide by 10 when validation loss stops improving: the AlexNet/ResNet practice.
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss" if has_val else "loss",
                                                     factor=0.1, patience=2, min_lr=cfg.lr * 1e-3))
    if cfg.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss",
                                                 patience=cfg.early_stopping))
    cbs.append(RunRecorder(run_dir, cfg.stage, stage_start,
                           monitor="val_accuracy" if has_val else "accuracy", best_so_far=best,
                           extra_state=extra_state, checkpoint_model=checkpoint_model))
    cbs.extend(extra)
    return cbs


def lr_range_test(model: keras.Model, dataset: Any, *, min_lr: float = 1e-6, max_lr: float = 1.0,
                  steps: int = 100, optimizer: str = "adam", num_classes: int = 2) -> dict[str, Any]:
    """Leslie Smith's LR range test: raise the rate exponentially each step, record the loss.

    The model's weights are restored afterwards. The suggestion is the rate at the
    steepest descent of the smoothed loss (a common, robust heuristic), which sits
    safely below the rate where the loss blows up.
    """
    initial = [v.numpy() if hasattr(v, "numpy") else keras.ops.convert_to_numpy(v) for v in model.weights]
    cfg = StageConfig(stage=1, epochs=1, lr=min_lr, optimizer=optimizer)
    compile_model(model, cfg, num_classes)
    factor = (max_lr / min_lr) ** (1 / max(steps - 1, 1))
    lrs, losses = [], []
    smooth, best = None, math.inf
    it = iter(dataset.repeat())
    for i in range(steps):
        lr = min_lr * factor**i
        model.optimizer.learning_rate.assign(lr)
        x, y = next(it)
        logs = model.train_on_batch(x, y, return_dict=True)
        loss = float(logs["loss"])
        # Exponential moving average started at 0, with Adam-style bias correction.
        smooth = 0.1 * loss if smooth is None else 0.9 * smooth + 0.1 * loss
        debiased = smooth / (1 - 0.9 ** (i + 1))
        lrs.append(lr)
        losses.append(debiased)
        best = min(best, debiased)
        if not math.isfinite(loss) or debiased > 4 * best:
            break
    for v, val in zip(model.weights, initial):
        v.assign(val)
    grads = np.gradient(np.asarray(losses), np.log10(np.asarray(lrs))) if len(losses) > 2 else np.zeros(1)
    # Ignore the noisy first tenth of the sweep when picking the steepest descent.
    start = max(1, len(grads) // 10)
    idx = int(np.argmin(grads[start:]) + start) if len(grads) > start else 0
    return {"lr": lrs, "loss": losses, "suggested_lr": float(lrs[idx]) if lrs else min_lr}


def fit_stage(model: keras.Model, train_ds: Any, val_ds: Any, cfg: StageConfig, *, run_dir: Path,
              initial_epoch: int, stage_start: int, best: float | None, class_weight: dict | None,
              extra_callbacks: Iterable[keras.callbacks.Callback] = (), verbose: Any = "auto",
              extra_state: dict | None = None, checkpoint_model: keras.Model | None = None,
              batch_size: int = 32) -> int:
    """Fit one stage from ``initial_epoch`` (global numbering); returns the next global epoch.

    ``train_ds`` / ``val_ds`` are datasets, or ``(x, y)`` arrays (cached features);
    ``checkpoint_model`` is what the checkpoints save when ``model`` is part of it.
    """
    end = stage_start + cfg.epochs
    if initial_epoch >= end:
        return initial_epoch
    if cfg.schedule in ("step", "cosine"):
        model.optimizer.learning_rate.assign(schedule_lr(cfg, initial_epoch - stage_start))
    with warnings.catch_warnings():
        # Keras warns that shuffle=True is ignored for a tf.data input: ours is shuffled in the pipeline.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        callbacks = stage_callbacks(cfg, run_dir, stage_start, best, extra_callbacks, has_val=val_ds is not None,
                                    extra_state=extra_state, checkpoint_model=checkpoint_model)
        if isinstance(train_ds, tuple):
            x, y = train_ds
            hist = model.fit(x, y, batch_size=batch_size, shuffle=True, validation_data=val_ds, epochs=end,
                             initial_epoch=initial_epoch, class_weight=class_weight, verbose=verbose,
                             callbacks=callbacks)
        else:
            hist = model.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=initial_epoch,
                             class_weight=class_weight, verbose=verbose, callbacks=callbacks)
    return initial_epoch + len(hist.epoch)


ProgressHook = Callable[[str], None]
