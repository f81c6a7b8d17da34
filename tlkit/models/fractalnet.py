"""FractalNet for CIFAR (Larsson, Maire & Shakhnarovich 2016), Keras 3 functional builder."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import ModelError
from tlkit.models._blocks import classifier_head, conv_bn

__all__ = ["fractalnet"]

# The paper's CIFAR network: five blocks, each followed by a 2x2/2 max pool, with these widths
# and dropout rates (section 4, "Training").
CHANNELS = (64, 128, 256, 512, 512)
DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)


def fractal_block(x: Any, filters: int, columns: int, name: str, dropout: float = 0.0) -> Any:
    """One fractal block of ``columns`` columns, drawn level by level.

    The expansion rule f_1(z) = conv(z), f_{C+1}(z) = join(f_C(f_C(z)), conv(z)) gives column
    ``c`` (1 = shortest) 2^(c-1) convs, 2^C - 1 in all, and a longest path of 2^(C-1) convs.
    At each depth level the convs of every column that ends there are joined by one
    element-wise mean (``{name}_join{level}``, a :class:`keras.layers.Average`), as the
    paper draws consecutive joins merged into one; a level with one conv has no join. Each
    conv is 3x3 "same", bias-free, then BN and ReLU (``{name}_col{c}_{k}_conv/_bn/_relu``
    for the k-th conv of column c), then dropout at ``dropout`` if above 0.

    Drop-path (the paper's local and global path dropping while training) is not built:
    the block is the network used at inference, where every path is kept.
    """
    depth = 2 ** (columns - 1)
    outs = [x] * columns  # outs[j]: the input of column C - j's next conv
    for level in range(1, depth + 1):
        active = [j for j in range(columns) if level % 2**j == 0]
        ys = []
        for j in active:
            c, k = columns - j, level // 2**j
            y = conv_bn(outs[j], filters, 3, name=f"{name}_col{c}_{k}", init_mode="fan_in")
            if dropout > 0:
                y = layers.Dropout(dropout, name=f"{name}_col{c}_{k}_drop")(y)
            ys.append(y)
        joined = layers.Average(name=f"{name}_join{level}")(ys) if len(ys) > 1 else ys[0]
        for j in active:
            outs[j] = joined
    return outs[0]


def fractalnet(
    *,
    columns: int = 3,
    channels: tuple[int, ...] = CHANNELS,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """FractalNet for CIFAR: ``len(channels)`` fractal blocks (B = 5) of ``columns`` columns,
    each followed by a 2x2/2 max pool (``block{b}_pool``), then global average pooling of the
    1x1 map (``avg_pool``) and a fully connected ``predictions`` layer.

    With C = 3 columns the longest path has B x 2^(C-1) = 20 convs: the paper's 20-layer
    network, 35 convs in all and 33,724,618 parameters for 10 classes (channels 64, 128,
    256, 512, 512). Joins are means (:func:`fractal_block`); drop-path is left out (the
    inference network). Dropout (0%, 10%, 20%, 30%, 40% in the five blocks, after each
    conv) only when ``include_top=True``; ``include_top=False`` returns the last pool's map.
    """
    if columns < 1 or not channels:
        raise ModelError(f"FractalNet needs columns >= 1 and at least one block, got {columns!r}, {channels!r}")
    if min(input_shape[:2]) < 2 ** len(channels):
        raise ModelError(f"FractalNet with {len(channels)} pools needs inputs of at least {2 ** len(channels)}")
    rates = DROPOUT if len(channels) == len(DROPOUT) else (0.0,) * len(channels)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for b, (filters, rate) in enumerate(zip(channels, rates), start=1):
        x = fractal_block(x, filters, columns, f"block{b}", dropout=rate if include_top else 0.0)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
    if include_top:
        x = classifier_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    layers_count = len(channels) * 2 ** (columns - 1)
    return keras.Model(inputs, x, name=f"fractalnet{layers_count}")
