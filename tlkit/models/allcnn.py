"""All-CNN-C family and Network in Network for CIFAR-10 (Keras 3 functional builders)."""

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


def allcnn(
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    variant: Literal["all", "strided", "convpool"] = "all",
) -> keras.Model:
    """The model C family of Springenberg et al. 2015 ("Striving for simplicity: the all
    convolutional net", Tables 1 and 2), for 32x32 CIFAR inputs.

    ``variant="all"`` (All-CNN-C): conv1 3x3 96, conv2 3x3 96, conv3 3x3 96 stride 2,
    conv4 3x3 192, conv5 3x3 192, conv6 3x3 192 stride 2, conv7 3x3 192 valid,
    conv8 1x1 192, conv9 1x1 num_classes, global average pool (``avg_pool``),
    softmax (``predictions``). 1,369,738 parameters for 10 classes.

    ``variant="strided"`` (Strided-CNN-C): model C with its max pools removed and
    stride 2 on the conv before each of them; that is All-CNN-C without conv3 and
    conv6, so the layers keep All-CNN-C's numbering (conv1, conv2/2, conv4, conv5/2,
    conv7, conv8, conv9). 954,730 parameters.

    ``variant="convpool"`` (ConvPool-CNN-C): model C with an extra 3x3 conv before
    each 3x3/2 max pool: conv1-conv3, pool1, conv4-conv6, pool2, conv7-conv9; the
    same convolutions as All-CNN-C (1,369,738 parameters), with pools instead of strides.

    Every conv, conv9 included, has ReLU, as in Table 2 ("1x1 conv. 10 ReLU").

    Dropout follows the paper (20% on the input, 50% after each pooling or
    stride-2 stage) but only when ``include_top=True``: it regularizes training of
    the whole classifier, while the body returned by ``include_top=False`` is a
    plain feature extractor (``conv8``'s 6x6x192 map; conv9 is the classifier).
    """
    if variant not in VARIANTS:
        raise ModelError(f"unknown All-CNN variant {variant!r}; choose one of {VARIANTS}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Dropout(0.2, name="drop_input")(inputs) if include_top else inputs
    for stage, (filters, first) in enumerate(((96, 1), (192, 4)), start=1):
        # Each stage is three 3x3 convs' worth of positions in model C numbering.
        x = _conv(x, filters, 3, f"conv{first}")
        if variant == "strided":
            x = _conv(x, filters, 3, f"conv{first + 1}", strides=2)
        elif variant == "all":
            x = _conv(x, filters, 3, f"conv{first + 1}")
            x = _conv(x, filters, 3, f"conv{first + 2}", strides=2)
        else:  # convpool
            x = _conv(x, filters, 3, f"conv{first + 1}")
            x = _conv(x, filters, 3, f"conv{first + 2}")
            x = _pool(x, f"pool{stage}")
        if include_top:
            x = layers.Dropout(0.5, name=f"drop{stage}")(x)
    x = _conv(x, 192, 3, "conv7", padding="valid")
    x = _conv(x, 192, 1, "conv8")
    if not include_top:
        return keras.Model(inputs, x, name=f"allcnn_{variant}")
    x = _conv(x, num_classes, 1, "conv9")
    return keras.Model(inputs, _gap_softmax(x, classifier_activation), name=f"allcnn_{variant}")


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
