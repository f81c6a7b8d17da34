"""All-CNN models A, B and C with their variants, and Network in Network, for CIFAR-10 (Keras 3
functional builders)."""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import layers

from tlkit.errors import ModelError

VARIANTS = ("all", "strided", "convpool")


def _conv(x: Any, filters: int, kernel: int, name: str, *, strides: int = 1, padding: str = "same") -> Any:
    return layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu", name=name)(x)


def _pool(x: Any, name: str) -> Any:
    # 3x3/2 max pool; "same" gives Caffe's ceil-mode sizes on CIFAR (32 -> 16 -> 8).
    return layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)


def _gap_softmax(x: Any, classifier_activation: str | None) -> Any:
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    # A separate activation layer keeps the name "predictions" stable even when
    # classifier_activation is None (then it is the identity).
    return layers.Activation(classifier_activation or "linear", name="predictions")(x)


# Springenberg et al. 2015, Table 1: the kernels of each stage's convs before its 3x3/2 max pool
# (96 filters in stage 1, 192 in stage 2). Model A: one 5x5; B: a 5x5 then a 1x1; C: two 3x3.
BASE_MODELS = {"a": (5,), "b": (5, 1), "c": (3, 3)}


def allcnn(
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    variant: Literal["all", "strided", "convpool"] = "all",
    model: Literal["a", "b", "c"] = "c",
) -> keras.Model:
    """The models A, B and C of Springenberg et al. 2015 ("Striving for simplicity: the all
    convolutional net", Tables 1 and 2) and their variants, for 32x32 CIFAR inputs.

    Base model ``model`` (Table 1), in two stages of 96 then 192 filters, each ending in a 3x3/2
    max pool: A has one 5x5 conv per stage, B a 5x5 then a 1x1 conv, C two 3x3 convs. All
    three share the top: 3x3 conv 192 valid, 1x1 conv 192, 1x1 conv num_classes, global
    average pool (``avg_pool``), softmax (``predictions``). Layers are numbered as in the
    All-CNN form, where each stage's pool is a conv: C and B run conv1..conv9, A conv1..conv7.

    ``variant="all"`` (All-CNN-X): each max pool replaced by a 3x3 conv with stride 2 (C:
    conv1 3x3 96, conv2 3x3 96, conv3 3x3 96 stride 2, conv4 3x3 192, conv5 3x3 192, conv6
    3x3 192 stride 2, conv7 3x3 192 valid, conv8 1x1 192, conv9 1x1 num_classes).
    1,369,738 parameters for C, 1,300,618 for B, 1,254,250 for A (10 classes).

    ``variant="strided"`` (Strided-CNN-X): the max pools removed and stride 2 on the conv
    before each of them; All-CNN-X without its stride-2 convs, keeping its numbering (C:
    conv1, conv2/2, conv4, conv5/2, conv7, conv8, conv9; B's stride-2 convs are its 1x1s).
    The base model's parameters: 954,730 for C, 885,610 for B, 839,242 for A.

    ``variant="convpool"`` (ConvPool-CNN-X): an extra 3x3 conv (the pool's kernel size) before
    each 3x3/2 max pool (``pool1``, ``pool2``): the same convolutions as All-CNN-X, with pools
    instead of strides, so the same parameter count.

    Every conv, the classifier conv included, has ReLU, as in Table 2 ("1x1 conv. 10 ReLU").
    Convs pad "same" (32 -> 16 -> 8 at the strides and pools), the top 3x3 "valid" (8 -> 6).

    Dropout follows the paper (20% on the input, 50% after each pooling or
    stride-2 stage) but only when ``include_top=True``: it regularizes training of
    the whole classifier, while the body returned by ``include_top=False`` is a
    plain feature extractor (the penultimate 1x1 conv's 6x6x192 map; the last conv is the
    classifier).
    """
    if variant not in VARIANTS:
        raise ModelError(f"unknown All-CNN variant {variant!r}; choose one of {VARIANTS}")
    if model not in BASE_MODELS:
        raise ModelError(f"unknown All-CNN base model {model!r}; choose one of {tuple(BASE_MODELS)}")
    kernels = BASE_MODELS[model]
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Dropout(0.2, name="drop_input")(inputs) if include_top else inputs
    n = 0  # the All-CNN-X number of the last conv
    for stage, filters in enumerate((96, 192), start=1):
        for i, kernel in enumerate(kernels):
            last = i == len(kernels) - 1
            # Strided: the conv before the (removed) pool takes its stride.
            stride = 2 if (last and variant == "strided") else 1
            x = _conv(x, filters, kernel, f"conv{n + 1 + i}", strides=stride)
        n += len(kernels) + 1  # the pool's position is a conv in All-CNN-X
        if variant == "all":
            x = _conv(x, filters, 3, f"conv{n}", strides=2)
        elif variant == "convpool":
            x = _conv(x, filters, 3, f"conv{n}")
            x = _pool(x, f"pool{stage}")
        if include_top:
            x = layers.Dropout(0.5, name=f"drop{stage}")(x)
    x = _conv(x, 192, 3, f"conv{n + 1}", padding="valid")
    x = _conv(x, 192, 1, f"conv{n + 2}")
    suffix = "" if model == "c" else f"_{model}"
    if not include_top:
        return keras.Model(inputs, x, name=f"allcnn_{variant}{suffix}")
    x = _conv(x, num_classes, 1, f"conv{n + 3}")
    return keras.Model(inputs, _gap_softmax(x, classifier_activation), name=f"allcnn_{variant}{suffix}")


def nin(
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Network in Network for CIFAR-10 (Lin, Chen & Yan 2014), as in the authors' Caffe model.

    conv1 5x5 192, cccp1 1x1 160, cccp2 1x1 96, pool1 3x3/2 max, dropout,
    conv2 5x5 192, cccp3 1x1 192, cccp4 1x1 192, pool2 3x3/2 avg, dropout,
    conv3 3x3 192, cccp5 1x1 192, cccp6 1x1 num_classes, global average pool
    (``avg_pool``), softmax (``predictions``). All convs "same", all with ReLU
    (cccp6 too, as in the Caffe model). 966,986 parameters for 10 classes.

    Dropout (0.5 after each pool) only when ``include_top=True``, as in
    :func:`allcnn`; ``include_top=False`` returns ``cccp5``'s 8x8x192 map.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(inputs, 192, 5, "conv1")
    x = _conv(x, 160, 1, "cccp1")
    x = _conv(x, 96, 1, "cccp2")
    x = _pool(x, "pool1")
    if include_top:
        x = layers.Dropout(0.5, name="drop1")(x)
    x = _conv(x, 192, 5, "conv2")
    x = _conv(x, 192, 1, "cccp3")
    x = _conv(x, 192, 1, "cccp4")
    x = layers.AveragePooling2D(3, strides=2, padding="same", name="pool2")(x)
    if include_top:
        x = layers.Dropout(0.5, name="drop2")(x)
    x = _conv(x, 192, 3, "conv3")
    x = _conv(x, 192, 1, "cccp5")
    if not include_top:
        return keras.Model(inputs, x, name="nin")
    x = _conv(x, num_classes, 1, "cccp6")
    return keras.Model(inputs, _gap_softmax(x, classifier_activation), name="nin")
