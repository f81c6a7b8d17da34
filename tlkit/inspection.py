"""Per-layer accounting: shapes, activations, parameters, receptive field, multiply-adds."""

from __future__ import annotations

import math
from typing import Any


def conv_output_size(W: int, F: int, S: int, P: int, D: int = 1) -> int:
    """Spatial output size of a convolution or pooling: (W - D(F-1) - 1 + 2P)/S + 1.

    With dilation D=1 this is the familiar (W - F + 2P)/S + 1. A result that is
    not an integer means the hyperparameters do not tile the input; that is an
    error (W=10, F=3, S=2, P=0 gives 4.5).
    """
    for name, v in (("W", W), ("F", F), ("S", S), ("D", D)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if P < 0:
        raise ValueError(f"P must be >= 0, got {P!r}")
    span = W + 2 * P - D * (F - 1) - 1
    if span < 0:
        raise ValueError(f"the filter (F={F}, D={D}) is larger than the padded input (W={W}, P={P})")
    out = span / S + 1
    if out != math.floor(out):
        raise ValueError(
            f"(W - F + 2P)/S + 1 = ({W} - {D * (F - 1) + 1} + 2*{P})/{S} + 1 = {out:g} is not an "
            f"integer: these hyperparameters do not tile the input; change the padding or stride")
    return int(out)


def _moving_stat_ids(model: Any) -> set[int]:
    import keras

    ids: set[int] = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            ids.update(id(v) for v in (layer.moving_mean, layer.moving_variance))
    return ids


def parameter_counts(model: Any) -> dict[str, int]:
    """``paper``: weights + biases + BN scale/offset (as papers and torchvision count);
    ``keras``: ``model.count_params()``, which also counts BN moving statistics."""
    skip = _moving_stat_ids(model)
    paper = sum(int(math.prod(v.shape)) for v in model.weights if id(v) not in skip)
    return {"paper": paper, "keras": int(model.count_params())}
