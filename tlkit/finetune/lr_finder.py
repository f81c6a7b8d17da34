"""The LR range test (``--find-lr``) and the rule that reads a learning rate off its loss curve.

:func:`lr_range_test` sweeps the rate over one training step each and restores the weights;
:func:`suggest_lr` picks the rate from the per-step losses, refusing (with a
:class:`~tlkit.errors.ConfigError`) a curve whose fall is no bigger than batch-to-batch noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from tlkit.errors import ConfigError
from tlkit.finetune.train import StageConfig, compile_model


def lr_range_test(
    model: keras.Model,
    dataset: Any,
    *,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    optimizer: str = "adam",
    num_classes: int = 2,
    **labels: Any,
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
    # labels: StageConfig's label_smoothing/soft_labels, for a pipeline of float label vectors.
    compile_model(model, StageConfig(stage=1, epochs=1, lr=min_lr, optimizer=optimizer, **labels), num_classes)
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
