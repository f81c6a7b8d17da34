"""``--ema DECAY``: an exponential moving average of the trainable weights (timm's ModelEmaV2,
torchvision's EMA), kept by Keras' own optimizer option (``use_ema=True``, ``ema_momentum=DECAY``).

What tlkit adds to Keras' EMA (its variables, ``_model_variables_moving_average``, are the
optimizer's, so a ``.keras`` checkpoint holds them and ``--resume`` restores them):

- **Warm-up.** After ``t`` updates the average moves with decay ``min(DECAY, (1 + t) / (10 + t))``
  (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``). Keras' EMA has none: on small
  data (tens to hundreds of steps) an average at 0.999 would stay next to the first step's weights
  (0.999^100 = 0.90 of them), a near-random head. The decay reaches 0.9 at 80 updates, 0.99 at 890.
  The average starts at the weights the optimizer was built on.
- **One EMA across the run.** The update count is an optimizer variable (``ema_updates``) carried to
  stage 2's fresh optimizer. At the stage switch the model takes the EMA weights (as Keras' ``fit``
  does at the end of a stage), and stage 2 trains on from them: the smoother head is the better
  start for the unfrozen blocks, and it is the head whose validation accuracy chose ``best.keras``.
- **Exact swaps.** Validation and ``best.keras`` use the EMA weights; the raw ones are put back
  from a copy, bit for bit (Keras' ``SwapEMAWeights`` swaps by adding and subtracting, which rounds).

BatchNorm moving statistics are not trainable variables and are not averaged (as in Keras): the EMA
model uses the running statistics, themselves a moving average; frozen BatchNorm (the default) has
constant ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np
from keras import ops

WARMUP = 10.0


class _WarmedUpEMA:
    """Keras' optimizer EMA with a warm-up, an update count that survives a checkpoint, and an
    average that starts at the weights (mixed into Adam and SGD)."""

    def build(self, variables: list) -> None:
        if self.built:
            return
        super().build(variables)
        if self.use_ema:
            self._ema_updates = self.add_variable(
                shape=(), initializer="zeros", dtype="int64", aggregation="only_first_replica", name="ema_updates"
            )
            for var, average in zip(variables, self._model_variables_moving_average):
                average.assign(var)

    def _update_model_variables_moving_average(self, trainable_variables: list) -> None:
        if not self.use_ema:
            return
        t = ops.cast(self._ema_updates, "float32")
        decay = ops.minimum(ops.cast(self.ema_momentum, "float32"), (1.0 + t) / (WARMUP + t))
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                d = ops.cast(decay, average.dtype)
                average.assign(ops.add(ops.multiply(d, average), ops.multiply(ops.subtract(1, d), var)))
        self._ema_updates.assign_add(1)


@keras.saving.register_keras_serializable(package="tlkit")
class EmaAdam(_WarmedUpEMA, keras.optimizers.Adam):
    """Adam keeping a warmed-up EMA of the weights (see the module docstring)."""


@keras.saving.register_keras_serializable(package="tlkit")
class EmaSGD(_WarmedUpEMA, keras.optimizers.SGD):
    """SGD keeping a warmed-up EMA of the weights (see the module docstring)."""


def decay_after(updates: int, decay: float) -> float:
    """The decay of the update that follows ``updates`` earlier ones."""
    return min(decay, (1.0 + updates) / (WARMUP + updates))


def optimizer_class(name: str) -> type:
    return {"adam": EmaAdam, "sgd": EmaSGD}[name]


def ema_optimizer(model: keras.Model) -> Any:
    """The model's optimizer that keeps an EMA (inside a LossScaleOptimizer), or None."""
    opt = getattr(model, "optimizer", None)
    opt = getattr(opt, "inner_optimizer", opt)
    return opt if getattr(opt, "use_ema", False) and getattr(opt, "built", False) else None


def updates(model: keras.Model) -> int:
    """EMA updates made so far (0 without an EMA)."""
    opt = ema_optimizer(model)
    return int(ops.convert_to_numpy(opt._ema_updates)) if opt is not None else 0


def averages(model: keras.Model) -> list[np.ndarray]:
    """The EMA weights, in the order of the optimizer's trainable variables."""
    opt = ema_optimizer(model)
    return [np.asarray(ops.convert_to_numpy(a)) for a in opt._model_variables_moving_average]


class Swap:
    """Puts the EMA weights into the model's trainable variables and the raw ones back exactly."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self._raw: list[np.ndarray] | None = None

    def ema_in(self) -> None:
        opt = ema_optimizer(self.model)
        if opt is None or self._raw is not None:
            return
        self._raw = [np.array(ops.convert_to_numpy(v)) for v in opt._trainable_variables]
        for var, average in zip(opt._trainable_variables, opt._model_variables_moving_average):
            var.assign(ops.convert_to_numpy(average))

    def raw_back(self) -> None:
        opt = ema_optimizer(self.model)
        if opt is None or self._raw is None:
            return
        for var, value in zip(opt._trainable_variables, self._raw):
            var.assign(value)
        self._raw = None


@contextmanager
def ema_weights(model: keras.Model) -> Iterator[None]:
    """Within the block the model holds its EMA weights (no-op without an EMA)."""
    swap = Swap(model)
    swap.ema_in()
    try:
        yield
    finally:
        swap.raw_back()


class EmaValidation(keras.callbacks.Callback):
    """Validation on the EMA weights: in from the test's begin to the epoch's end.

    Placed before the run recorder, after the loggers: they see the EMA model's metrics (and
    TensorBoard's confusion image its predictions); the recorder gets the raw weights back to
    save ``last.keras`` and saves ``best.keras`` inside :func:`ema_weights`.
    """

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._swap = Swap(model)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._swap.ema_in()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._swap.raw_back()

    on_train_end = on_epoch_begin = on_epoch_end


def finalize(model: keras.Model) -> None:
    """The model takes its EMA weights for good (as ``fit`` does at a stage's end; idempotent)."""
    opt = ema_optimizer(model)
    if opt is not None:
        for var, average in zip(opt._trainable_variables, opt._model_variables_moving_average):
            var.assign(ops.convert_to_numpy(average))


def carry_count(model: keras.Model, count: int) -> None:
    """Stage 2's fresh optimizer goes on counting the run's EMA updates (its average starts at the weights)."""
    opt = ema_optimizer(model)
    if opt is not None:
        opt._ema_updates.assign(count)
