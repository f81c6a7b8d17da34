"""VGG configurations A to E (Keras 3 functional builder, the paper's layer names)."""

from __future__ import annotations

import keras
from keras import layers

from tlkit.errors import ModelError
from tlkit.models.alexnet import fc_head
from tlkit.models.layers import LocalResponseNormalization

# Simonyan & Zisserman 2015, Table 1: per block, the (filters, kernel size) of
# each conv layer. Every block ends in a 2x2/2 max pool. Configuration C differs
# from D only in using 1x1 convs as the last conv of blocks 3, 4 and 5.
_B1A = [(64, 3)]
_B1 = [(64, 3), (64, 3)]
_B2A = [(128, 3)]
_B2 = [(128, 3), (128, 3)]
CONFIGS: dict[str, list[list[tuple[int, int]]]] = {
    "A": [_B1A, _B2A, [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2],
    "A-LRN": [_B1A, _B2A, [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2],
    "B": [_B1, _B2, [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2],
    "C": [_B1, _B2, [(256, 3), (256, 3), (256, 1)], [(512, 3), (512, 3), (512, 1)], [(512, 3), (512, 3), (512, 1)]],
    "D": [_B1, _B2, [(256, 3)] * 3, [(512, 3)] * 3, [(512, 3)] * 3],
    "E": [_B1, _B2, [(256, 3)] * 4, [(512, 3)] * 4, [(512, 3)] * 4],
}


def vgg(
    *,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    config: str = "D",
) -> keras.Model:
    """VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale
    image recognition"), configuration ``config`` of Table 1: "A", "A-LRN", "B", "C",
    "D" (VGG-16) or "E" (VGG-19).

    Convs are stride 1 with "same" padding and ReLU; each block ends in a 2x2/2
    max pool (``pool1``..``pool5``); the head is fc6 4096, drop6, fc7 4096, drop7,
    fc8. Conv layers are named ``conv{block}_{i}`` as in the Caffe release
    (``conv3_3``). "A-LRN" adds LRN (``norm1``, AlexNet's parameters) after
    ``conv1_1``; it has no parameters, so A and A-LRN both count 132,863,336.

    ``include_top=False`` returns the ``pool5`` feature map.
    """
    key = config.upper()
    if key not in CONFIGS:
        raise ModelError(f"unknown VGG configuration {config!r}; choose one of {sorted(CONFIGS)}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for block, convs in enumerate(CONFIGS[key], start=1):
        for i, (filters, kernel) in enumerate(convs, start=1):
            x = layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"conv{block}_{i}")(x)
            if key == "A-LRN" and block == 1 and i == 1:
                x = LocalResponseNormalization(name="norm1")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    if include_top:
        x = fc_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name=f"vgg_{key.lower().replace('-', '_')}")
