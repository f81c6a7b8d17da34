"""Staged finetuning: train the new head on a frozen base, then unfreeze the top blocks at a lower rate.

This module knows Keras training (optimizers, schedules, callbacks, resume) but
not where data comes from; :mod:`tlkit.finetune.pipeline` wires data, model and run directory.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlkit._io import atomic_path
from tlkit.errors import ConfigError
from tlkit.finetune.rundir import BEST, HISTORY, LAST, RunDir

HISTORY_FIELDS = ["epoch", "stage", "lr", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]


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
    """Per epoch, in this order: last checkpoint, best checkpoint, history row, state.

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
        save_checkpoint(ckpt, self.run_dir / LAST)
        value = logs.get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            save_checkpoint(ckpt, self.run_dir / BEST)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch, "stage": self.stage, "lr": lr, "seconds": round(time.time() - self._t0, 3)}
        row.update({k: float(logs[k]) for k in HISTORY_FIELDS if k in logs})
        append_history(self.run_dir / HISTORY, row)
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
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:  # a kill leaves the old history
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_FIELDS})


def write_state(run_dir: Path, state: dict) -> None:
    """``state.json`` (atomic): the next epoch, the stage and its start, the best score so far."""
    RunDir(run_dir).write_state(state)


def read_state(run_dir: Path) -> dict:
    return RunDir(run_dir).read_state()


def stage_callbacks(
    cfg: StageConfig,
    run_dir: Path,
    stage_start: int,
    best: float | None,
    extra: Iterable[keras.callbacks.Callback] = (),
    has_val: bool = True,
    extra_state: dict | None = None,
    checkpoint_model: keras.Model | None = None,
) -> list[keras.callbacks.Callback]:
    """Schedules, early stopping and the run recorder for one stage."""
    cbs: list[keras.callbacks.Callback] = []
    if cfg.schedule in ("step", "cosine"):
        cbs.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: schedule_lr(cfg, epoch - stage_start)))
    elif cfg.schedule == "plateau":
        # Divide by 10 when validation loss stops improving: the AlexNet/ResNet practice.
        cbs.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss" if has_val else "loss", factor=0.1, patience=2, min_lr=cfg.lr * 1e-3
            )
        )
    if cfg.early_stopping:
        cbs.append(
            keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss", patience=cfg.early_stopping)
        )
    cbs.append(
        RunRecorder(
            run_dir,
            cfg.stage,
            stage_start,
            monitor="val_accuracy" if has_val else "accuracy",
            best_so_far=best,
            extra_state=extra_state,
            checkpoint_model=checkpoint_model,
        )
    )
    cbs.extend(extra)
    return cbs


def lr_range_test(
    model: keras.Model,
    dataset: Any,
    *,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    optimizer: str = "adam",
    num_classes: int = 2,
) -> dict[str, Any]:
    """Leslie Smith's LR range test: one training step per rate, the rate raised
    exponentially from ``min_lr`` to ``max_lr``; the loss of every step is recorded.

    The sweep stops early at the divergence point: a non-finite loss, or (after a
    warm-up of a tenth of the steps) a running loss above both 4x its best and the
    loss before training. The model's weights are restored afterwards (also when the
    sweep fails). The suggestion follows :func:`suggest_lr` (the rule is documented
    there) and raises :class:`~tlkit.errors.ConfigError` when the loss never falls.

    Returns ``lr`` (the rates tried), ``loss`` (the smoothed curve), ``raw_loss``,
    ``suggested_lr``, ``falling`` (the falling region's first and last rate),
    ``min_loss_lr``, ``diverged_lr`` (None if the sweep reached ``max_lr``), ``fall``
    and ``chance_fall`` (how far the loss fell, and how far noise alone can make it fall).
    On a refusal the :class:`~tlkit.errors.ConfigError` carries the curve as ``.curve``.
    """
    if not (0 < min_lr < max_lr) or steps < 2:
        raise ConfigError(
            f"the LR range test needs 0 < min_lr < max_lr and steps >= 2, got min_lr={min_lr}, "
            f"max_lr={max_lr}, steps={steps}"
        )
    initial = [keras.ops.convert_to_numpy(v) for v in model.weights]
    compile_model(model, StageConfig(stage=1, epochs=1, lr=min_lr, optimizer=optimizer), num_classes)
    factor = (max_lr / min_lr) ** (1 / (steps - 1))
    warm = max(5, steps // 10)
    lrs: list[float] = []
    raw: list[float] = []
    diverged: float | None = None
    running, best, start = 0.0, math.inf, math.inf
    it = iter(dataset.repeat())
    try:
        for i in range(steps):
            lr = min_lr * factor**i
            model.optimizer.learning_rate.assign(lr)
            x, y = next(it)
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            if not math.isfinite(loss):
                diverged = lr
                break
            lrs.append(lr)
            raw.append(loss)
            # Debiased moving average: only the stopping test uses it (it lags; the suggestion
            # uses a centred smoothing of the whole curve instead).
            running = 0.9 * running + 0.1 * loss
            smooth = running / (1 - 0.9 ** (i + 1))
            if i + 1 == warm:
                # The loss before training, robust to a lucky or unlucky first batch.
                start = float(np.median(raw))
            if i + 1 >= warm:
                best = min(best, smooth)
                if smooth > max(4 * best, start):
                    diverged = lr
                    break
    finally:
        for v, val in zip(model.weights, initial):
            v.assign(val)
    try:
        found = suggest_lr(lrs, raw, diverged_lr=diverged)
    except ConfigError as err:
        err.curve = {"lr": lrs, "raw_loss": raw, "diverged_lr": diverged}  # for a plot of the refused curve
        raise
    return {**found, "diverged_lr": diverged}


def smooth_curve(values: Any, sigma: float) -> np.ndarray:
    """A centred Gaussian smoothing (``sigma`` in steps) along the last axis, renormalised at the ends.

    Centred, unlike a running average, so the smoothed curve does not lag behind
    the rate (a lag shifts every feature of the curve towards higher rates).
    """
    from scipy.ndimage import gaussian_filter1d

    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] < 3 or sigma <= 0:
        return v.copy()
    # Zero padding, then divide by the kernel mass inside the curve: the ends average
    # only real points (no mirrored or repeated values).
    num = gaussian_filter1d(v, sigma, axis=-1, mode="constant", cval=0.0, truncate=4.0)
    den = gaussian_filter1d(np.ones(v.shape[-1]), sigma, mode="constant", cval=0.0, truncate=4.0)
    return num / den


def _fall(curves: np.ndarray, sigma: float) -> np.ndarray:
    """How far each curve (rows of per-step losses) falls once smoothed: from the loss at
    the start (the median of the first tenth, at least 5 steps) or from the highest smoothed
    loss before the minimum, whichever is less, down to the minimum."""
    curves = np.atleast_2d(curves)
    smooth = smooth_curve(curves, sigma)
    m = np.argmin(smooth, axis=1)
    before = np.where(np.arange(smooth.shape[1])[None, :] <= m[:, None], smooth, -np.inf)
    start = np.median(curves[:, : max(5, curves.shape[1] // 10)], axis=1)
    return np.minimum(before.max(axis=1), start) - smooth[np.arange(len(smooth)), m]


def suggest_lr(
    lrs: Iterable[float],
    losses: Iterable[float],
    *,
    sigma: float | None = None,
    diverged_lr: float | None = None,
    permutations: int = 1000,
) -> dict[str, Any]:
    """The learning rate to train at, from an LR range test's per-step losses.

    The rule, on the curve up to the divergence point (where the sweep stopped):

    1. Smooth the losses with a centred Gaussian of ``sigma`` steps (default: a 25th of
       the sweep, at least 2 steps), in two passes: before the second, losses more than 3
       robust standard deviations off the first are pulled in to 3.
    2. The minimum of the smoothed loss bounds the search; the loss falls from the
       highest smoothed loss before it (the top) to the minimum (the bottom).
    3. That fall must be real, not batch-to-batch noise. The fall, from the lower of the
       top and the loss at the start (the median of the first tenth of the steps) down to
       the bottom, must exceed 5% of the top and
       the fall of all but 0.1% of the curves made by the same noise (the residuals
       around the smoothed curve up to its minimum) in random order on a flat curve
       (drawn with replacement when the curve goes on past its minimum): a permutation test,
       free of assumptions about the noise's distribution, seeded so the answer is
       reproducible. Otherwise :class:`~tlkit.errors.ConfigError`: a flat or rising
       curve has no rate to suggest, and a pick from noise trains badly.
    4. The falling region runs from where the loss is below the top by more than noise
       alone can take it (the chance fall of step 3, at least 5% and at most half of the
       fall) to where 95% of the fall is done.
    5. The suggestion is the rate at the end of the falling region (rates up to it made
       the loss fall, so training at it is fast and stable), but at most a tenth of the
       rate at the minimum (where the loss stops falling and soon blows up: the common
       "an order of magnitude below the minimum" rule), and never below the start of
       the falling region. It is always one of ``lrs``.

    ``diverged_lr`` (where the sweep stopped, if it did) only goes into the message.
    """
    lr = np.asarray(lrs, dtype=np.float64)
    raw = np.asarray(losses, dtype=np.float64)
    n = len(raw)
    if n < 5:
        where = f" (at {lr[-1]:.2g})" if n else ""
        raise ConfigError(
            f"--find-lr: the LR range test stopped after {n} step(s){where}: the loss blows up "
            f"even at the smallest rates; set the rate with --lr (e.g. 1e-4) instead"
        )
    sigma = max(2.0, n / 25) if sigma is None else sigma
    # Two passes: a batch far off the curve (more than 3 robust standard deviations) is
    # pulled in to 3 before the final smoothing, so one outlier cannot make a dip or a bump.
    first = smooth_curve(raw, sigma)
    spread = 1.4826 * float(np.median(np.abs(raw - first - np.median(raw - first))))
    clipped = first + np.clip(raw - first, -3 * spread, 3 * spread) if spread > 0 else raw
    smooth = smooth_curve(clipped, sigma)
    m = int(np.argmin(smooth))
    a = int(np.argmax(smooth[: m + 1]))
    top, bottom = float(smooth[a]), float(smooth[m])
    drop = top - bottom
    fall = float(_fall(clipped, sigma)[0])
    # What noise alone does: the residuals around the smoothed curve (scaled up by what the
    # smoothing absorbs of each point), in random order, on a flat curve. Only residuals up
    # to the minimum: past it the curve can rise faster than the smoothing follows.
    resid = (clipped - smooth)[: max(m + 1, 10)] / (1 - 1 / (math.sqrt(2 * math.pi) * sigma))
    rng = np.random.default_rng(0)
    shuffled = (
        np.stack([rng.permutation(resid) for _ in range(permutations)])
        if len(resid) >= n
        else rng.choice(resid, size=(permutations, n), replace=True)
    )
    chance = float(np.quantile(_fall(shuffled, sigma), 0.999))
    need = max(chance, 0.05 * abs(top))
    if fall <= need:
        stopped = f" (diverged at {diverged_lr:.2g})" if diverged_lr is not None else ""
        raise ConfigError(
            f"--find-lr found no rate where the loss falls: over {lr[0]:.2g}..{lr[-1]:.2g}{stopped} the loss "
            f"starts at {np.median(clipped[: max(5, n // 10)]):.3g} and its smoothed minimum is {bottom:.3g} at "
            f"{lr[m]:.2g}, a fall of {max(fall, 0.0):.3g}, not more than the {need:.3g} that batch-to-batch "
            f"noise alone can give; set "
            f"the rate with --lr (default 1e-3) instead, or check the labels with `tlkit check-data`"
        )
    seg = smooth[a : m + 1]
    # The fall starts where the loss is below the top by more than noise alone moves it.
    start = a + int(np.argmax(seg <= top - max(0.05 * drop, min(chance, 0.5 * drop))))
    end = a + int(np.argmax(seg <= bottom + 0.05 * drop))
    logs = np.log10(lr)
    cap = int(np.searchsorted(logs, logs[m] - 1.0, side="right")) - 1  # the last rate <= lr_min / 10
    pick = max(min(end, cap), start)
    return {
        "lr": [float(v) for v in lr],
        "loss": [float(v) for v in smooth],
        "raw_loss": [float(v) for v in raw],
        "suggested_lr": float(lr[pick]),
        "falling": (float(lr[start]), float(lr[end])),
        "min_loss_lr": float(lr[m]),
        "fall": fall,
        "chance_fall": chance,
        "sigma": sigma,
    }


def fit_stage(
    model: keras.Model,
    train_ds: Any,
    val_ds: Any,
    cfg: StageConfig,
    *,
    run_dir: Path,
    initial_epoch: int,
    stage_start: int,
    best: float | None,
    class_weight: dict | None,
    extra_callbacks: Iterable[keras.callbacks.Callback] = (),
    verbose: Any = "auto",
    extra_state: dict | None = None,
    checkpoint_model: keras.Model | None = None,
    batch_size: int = 32,
) -> int:
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
        callbacks = stage_callbacks(
            cfg,
            run_dir,
            stage_start,
            best,
            extra_callbacks,
            has_val=val_ds is not None,
            extra_state=extra_state,
            checkpoint_model=checkpoint_model,
        )
        if isinstance(train_ds, tuple):
            x, y = train_ds
            hist = model.fit(
                x,
                y,
                batch_size=batch_size,
                shuffle=True,
                validation_data=val_ds,
                epochs=end,
                initial_epoch=initial_epoch,
                class_weight=class_weight,
                verbose=verbose,
                callbacks=callbacks,
            )
        else:
            hist = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=end,
                initial_epoch=initial_epoch,
                class_weight=class_weight,
                verbose=verbose,
                callbacks=callbacks,
            )
    return initial_epoch + len(hist.epoch)


ProgressHook = Callable[[str], None]
