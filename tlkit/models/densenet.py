"""DenseNet-BC (Keras 3 functional builder, keras.applications layer names)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import ModelError
from tlkit.models._blocks import (
    batch_norm,
    bn_relu,
    classifier_head,
    conv,
    conv_bn,
)

__all__ = ["densenet"]


def _dense_layer(x: Any, growth_rate: int, bn_size: int, name: str) -> Any:
    # BN-ReLU-Conv1x1 (the "B" bottleneck, bn_size * k maps) then BN-ReLU-Conv3x3
    # (k maps); the k new maps are concatenated to everything before them.
    y = bn_relu(x, f"{name}_0")
    y = conv(y, bn_size * growth_rate, 1, name=f"{name}_1", init_mode="fan_in")
    y = bn_relu(y, f"{name}_1")
    y = conv(y, growth_rate, 3, name=f"{name}_2", init_mode="fan_in")
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def _transition(x: Any, compression: float, name: str) -> Any:
    # The "C" in BC: a 1x1 conv keeps int(compression * C) maps, then a 2x2/2 average pool.
    x = bn_relu(x, name)
    x = conv(x, int(x.shape[-1] * compression), 1, name=name, init_mode="fan_in")
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet(
    *,
    blocks: tuple[int, ...],
    growth_rate: int = 32,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    stem_filters: int = 64,
    bn_size: int = 4,
    compression: float = 0.5,
) -> keras.Model:
    """DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks").

    ``blocks`` gives the dense layers per dense block ((6, 12, 24, 16) is
    DenseNet-121); each dense layer adds ``growth_rate`` maps through a
    ``bn_size * growth_rate`` 1x1 bottleneck; transitions compress by
    ``compression``. The stem is a ``stem_filters`` 7x7/2 conv, BN, ReLU and a
    3x3/2 max pool. Convs have no biases; BN eps is 1e-5 (torchvision).

    Layers (as keras.applications.DenseNet121): stem ``conv1_conv``/``conv1_bn``/
    ``conv1_relu``/``pool1``; dense layers ``conv{S}_block{I}_*`` (S = 2..) ending
    in ``conv{S}_block{I}_concat``; transitions ``pool{S}_bn``/``_relu``/``_conv``/
    ``_pool``; final ``bn``/``relu``; head ``avg_pool``, ``predictions``.
    ``include_top=False`` returns the ``relu`` feature map.
    """
    blocks = tuple(int(b) for b in blocks)
    if not blocks or min(blocks) < 1:
        raise ModelError(f"blocks must be a non-empty tuple of positive integers, got {blocks!r}")
    if growth_rate < 1 or bn_size < 1 or not 0 < compression <= 1:
        raise ModelError("growth_rate and bn_size must be >= 1 and 0 < compression <= 1")

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = conv_bn(inputs, stem_filters, 7, strides=2, name="conv1", init_mode="fan_in")
    # Zero padding after the ReLU equals torch's -inf max-pool padding.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, n_layers in enumerate(blocks, start=2):
        for i in range(1, n_layers + 1):
            x = _dense_layer(x, growth_rate, bn_size, f"conv{stage}_block{i}")
        if stage < len(blocks) + 1:
            x = _transition(x, compression, f"pool{stage}")
    x = batch_norm(x, "bn")
    x = layers.Activation("relu", name="relu")(x)
    if include_top:
        x = classifier_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    depth = 2 * sum(blocks) + len(blocks) + 1  # conv layers + transitions + stem + classifier
    return keras.Model(inputs, x, name=f"densenet{depth}")
