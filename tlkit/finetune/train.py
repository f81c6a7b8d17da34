"""Staged finetuning: train the new head on a frozen base, then unfreeze the top blocks at a lower rate.

This module is the training loop of one stage: optimizers, schedules, the stage's callbacks and
``fit`` from a resumed epoch. It does not know where data comes from (:mod:`tlkit.finetune.pipeline`
wires data, model and run directory); what each epoch writes is :mod:`tlkit.finetune.recorder`'s,
and the LR range test is :mod:`tlkit.finetune.lr_finder`'s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from tlkit.errors import ConfigError
from tlkit.finetune.recorder import RunRecorder


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
    ema: float | None = None  # decay of the weights' moving average (tlkit.finetune.ema); None = off
    multi_label: bool = False  # sigmoid head: best.keras chosen by PR AUC (tlkit.finetune.multilabel)
    label_smoothing: float = 0.0  # --label-smoothing (tlkit.finetune.losses)
    soft_labels: bool = False  # the pipeline gives float label vectors (smoothing, mixup, cutmix)
    score: str | None = None  # the metric choosing best.keras when not accuracy/pr_auc ("mean_iou": tlkit.segment)


class EpochRandomness(keras.callbacks.Callback):
    """Makes an epoch's randomness a function of (seed, epoch), set as the epoch begins.

    The training pipeline reads its epoch from ``variable`` (its shuffle order and augmentation
    follow, :func:`tlkit.data.pipeline.make_dataset`), and every Keras ``SeedGenerator`` of the
    model (dropout) is put at a state made of the seed, its place in the model and the epoch.
    A ``.keras`` checkpoint does not save those generator states, and the pipeline's own
    per-iteration reshuffling would restart at epoch 0: with this, epoch e trains on the same
    batches with the same dropout masks whether the run got there uninterrupted or by ``--resume``.
    """

    def __init__(self, variable: Any, seed: int) -> None:
        super().__init__()
        self.variable = variable
        self.seed = int(seed)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.variable is not None:
            self.variable.assign(int(epoch))
        reseed(self.model, self.seed, epoch)


class StopOnInterrupt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at the next step once ``interrupted()`` says a signal arrived.

    For the Ctrl-C or SIGTERM whose KeyboardInterrupt was swallowed where it landed (a ``__del__``
    or garbage-collection callback, see :mod:`tlkit._signals`): the run stops within a batch as
    an ordinary interrupt does, instead of training on to its end. Not at an epoch's end, so the
    recorder and the callbacks after it (a store run's publishing) finish the epoch they began.
    """

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        super().__init__()
        self.interrupted = interrupted

    def _check(self, *args: Any, **kwargs: Any) -> None:
        if self.interrupted():
            raise KeyboardInterrupt

    on_train_begin = on_epoch_begin = on_train_batch_begin = on_train_batch_end = _check
    on_test_begin = on_test_batch_end = _check


def reseed(model: keras.Model, seed: int, epoch: int) -> None:
    """Put every generator at (seed and its index, epoch in the high bits of its counter)."""
    import numpy as np

    from tlkit._keras_compat import seed_generators

    for i, gen in enumerate(seed_generators(model)):
        gen.state.assign(np.array([(int(seed) << 16) + i, int(epoch) << 32], dtype="int64"))


def make_optimizer(cfg: StageConfig) -> keras.optimizers.Optimizer:
    """SGD with momentum (the AlexNet/ResNet recipe) or Adam, with decoupled weight decay."""
    wd = cfg.weight_decay or None
    kw: dict[str, Any] = {}
    sgd, adam = keras.optimizers.SGD, keras.optimizers.Adam
    if cfg.ema is not None:  # Keras' EMA option, warmed up (tlkit.finetune.ema)
        from tlkit.finetune import ema

        kw = {"use_ema": True, "ema_momentum": cfg.ema}
        sgd, adam = ema.EmaSGD, ema.EmaAdam
    if cfg.optimizer == "sgd":
        return sgd(learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=wd, **kw)
    if cfg.optimizer == "adam":
        return adam(learning_rate=cfg.lr, weight_decay=wd, **kw)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'")


def compile_model(model: keras.Model, cfg: StageConfig, num_classes: int) -> None:
    """(Re)compile after changing ``trainable``: Keras fixes the trainable set at compile time.

    A multi-label model (sigmoid head, :func:`tlkit.finetune.multilabel.is_multi_label`) gets
    binary cross-entropy (with ``--label-smoothing``) and its own metrics."""
    from tlkit.finetune import losses, multilabel

    if multilabel.is_multi_label(model):
        loss, ml_metrics = multilabel.compile_args()
        if cfg.label_smoothing:
            loss = losses.loss(multi_label=True, label_smoothing=cfg.label_smoothing)
        model.compile(optimizer=make_optimizer(cfg), loss=loss, metrics=ml_metrics)
        return
    model.compile(
        optimizer=make_optimizer(cfg),
        loss=losses.loss(label_smoothing=cfg.label_smoothing, soft=cfg.soft_labels),
        metrics=losses.metrics(num_classes, soft=cfg.soft_labels),
    )


def schedule_lr(cfg: StageConfig, epoch_in_stage: int) -> float:
    """Learning rate of an epoch under the step or cosine schedule (plateau is a callback)."""
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** (epoch_in_stage // max(cfg.step_epochs, 1))
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch_in_stage / max(cfg.epochs, 1)))
    if cfg.schedule in ("none", "plateau"):
        return cfg.lr
    raise ConfigError(f"unknown schedule {cfg.schedule!r}; use none, step, plateau or cosine")


def stage_callbacks(
    cfg: StageConfig,
    run_dir: Path,
    stage_start: int,
    best: float | None,
    extra: Iterable[keras.callbacks.Callback] = (),
    has_val: bool = True,
    extra_state: dict | None = None,
    checkpoint_model: keras.Model | None = None,
    loggers: Iterable[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """Schedules, early stopping, ``loggers`` and the run recorder for one stage.

    The loggers (TensorBoard) come after the schedules, so they log the rate history.csv records,
    and before the recorder, so what they wrote of an epoch is flushed before its state.json.
    """
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
    cbs.extend(loggers)
    if cfg.ema is not None:  # validation on the EMA weights, the raw ones back for the recorder
        from tlkit.finetune.ema import EmaValidation

        cbs.append(EmaValidation())
    score = cfg.score or ("pr_auc" if cfg.multi_label else "accuracy")  # what chooses best.keras
    cbs.append(
        RunRecorder(
            run_dir,
            cfg.stage,
            stage_start,
            monitor=f"val_{score}" if has_val else score,
            best_so_far=best,
            extra_state=extra_state,
            checkpoint_model=checkpoint_model,
        )
    )
    cbs.extend(extra)
    return cbs


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
    loggers: Iterable[keras.callbacks.Callback] = (),
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
            loggers=loggers,
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
