"""The CIFAR-10 ResNets of He et al. 2015, section 4.2 (Keras 3 functional builder).

Layer names follow tlkit's ResNet convention (:mod:`tlkit.models._blocks`): stem ``conv1_*``,
blocks ``conv{S}_block{I}_*`` for the three stages S = 2, 3, 4, head ``avg_pool`` and
``predictions``, so feature taps and "unfreeze the top N blocks" work as on ImageNet ResNets.
"""

from __future__ import annotations

import sys
from typing import Any

import keras
from keras import layers, ops

from tlkit.errors import ModelError
from tlkit.models._blocks import classifier_head, conv_bn

__all__ = ["DEPTHS", "PadShortcut", "cifar_resnet"]

# Table 6 of the paper: n = 3, 5, 7, 9, 18, 200 give 20, 32, 44, 56, 110 and 1202 layers.
DEPTHS = (20, 32, 44, 56, 110, 1202)
_FILTERS = (16, 32, 64)  # the three stages' widths, on 32x32, 16x16 and 8x8 maps
# Keras maps a functional graph recursively, one Python frame per layer on the longest path:
# ResNet-1202's ~5,400 layers need more than Python's default limit of 1,000 frames.
_LAYERS_PER_BLOCK = 9  # pad, conv, BN, ReLU, pad, conv, BN, add, ReLU
DEEP_GRAPH_LIMIT = 20_000


def allow_deep_graph(frames: int = DEEP_GRAPH_LIMIT) -> None:
    """Raise Python's recursion limit to at least ``frames`` (never lowers it). Called when a
    deep CIFAR ResNet is built or loaded; the raised limit stays, so that later graph walks of
    the same model (saving, loading, cloning) work too."""
    if sys.getrecursionlimit() < frames:
        sys.setrecursionlimit(frames)


@keras.saving.register_keras_serializable(package="tlkit")
class PadShortcut(keras.layers.Layer):
    """Option A shortcut of He et al. 2015 (section 3.3, used for CIFAR in 4.2): where a stage
    halves the map and doubles the filters, the identity is subsampled with stride 2 and the new
    channels are zeros ("extra zero entries padded for increasing dimensions"). No parameters.

    The input channels are kept first; ``channels`` is the output's channel count.
    """

    def __init__(self, channels: int, strides: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)

    def call(self, inputs: Any) -> Any:
        s = self.strides
        x = inputs[:, ::s, ::s, :]
        extra = self.channels - inputs.shape[-1]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]]) if extra > 0 else x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        def sub(v: int | None) -> int | None:
            return None if v is None else -(-v // self.strides)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels, "strides": self.strides}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PadShortcut:
        # Loading a saved model deserializes its layers before Keras maps the graph: a model
        # with this layer may be ResNet-1202, whose graph needs the deeper limit.
        allow_deep_graph()
        return cls(**config)


def _block(x: Any, filters: int, stride: int, name: str) -> Any:
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = PadShortcut(filters, stride, name=f"{name}_0_shortcut")(x)
    y = conv_bn(x, filters, 3, strides=stride, name=f"{name}_1", init_mode="fan_in")
    y = conv_bn(y, filters, 3, relu=False, name=f"{name}_2", init_mode="fan_in")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def cifar_resnet(
    *,
    depth: int = 20,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """The ``depth``-layer CIFAR ResNet of He et al. 2015, section 4.2 (``depth = 6n + 2``).

    A 3x3 conv of 16 filters (``conv1``), then three stages of ``n`` basic blocks (two 3x3
    convs each, BN after every conv, ReLU after the first and after the add) with 16, 32 and
    64 filters on 32x32, 16x16 and 8x8 maps; the first conv of stages 3 and 4 has stride 2.
    Every shortcut is an identity, option A where the shape changes (:class:`PadShortcut`),
    so the network has no projection parameters: 6n + 2 weighted layers (the convs and the
    final 10-way fully connected ``predictions``), e.g. 110 for n = 18. Convs have no biases
    (the BN supplies them) and He-normal weights.

    Trainable parameters with 10 classes: 269,722 (20 layers), 464,154 (32), 658,586 (44),
    853,018 (56), 1,727,962 (110), 19,421,274 (1202); the paper's Table 6 rounds them to
    0.27M, 0.46M, 0.66M, 0.85M, 1.7M and 19.4M. ``include_top=False`` returns the last
    block's 8x8x64 map (``conv4_block{n}_out``).

    Keras maps a functional graph with one Python frame per layer of its longest path, so
    depths above 110 (ResNet-1202 has about 5,400 layers in a row) raise Python's recursion
    limit to 20,000 (:func:`allow_deep_graph`); loading a saved model with
    :class:`PadShortcut` layers does the same.
    """
    if (depth - 2) % 6 or depth < 8:
        raise ModelError(f"a CIFAR ResNet has 6n + 2 layers (20, 32, 44, 56, 110, 1202, ...), got {depth!r}")
    n = (depth - 2) // 6
    if depth > 110:
        allow_deep_graph(max(DEEP_GRAPH_LIMIT, 3 * n * _LAYERS_PER_BLOCK * 3 + 1000))
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = conv_bn(inputs, _FILTERS[0], 3, name="conv1", init_mode="fan_in")
    for stage, filters in enumerate(_FILTERS, start=2):
        for i in range(1, n + 1):
            stride = 2 if (i == 1 and stage > 2) else 1
            x = _block(x, filters, stride, f"conv{stage}_block{i}")
    if include_top:
        x = classifier_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name=f"resnet{depth}_cifar")
