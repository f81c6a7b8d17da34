"""Inception-v4 (Szegedy, Ioffe, Vanhoucke & Alemi 2016, Figures 3-9), Keras 3 functional builder.

Every conv is bias-free, followed by BatchNorm (eps 1e-3, with scale and offset) and ReLU, as
TF-slim's and timm's ``inception_v4``; "V" in the paper's figures is "valid" padding, every
other conv pads "same".

Layer names follow TF-slim's module names (``Mixed_5b`` ...), in the form of tlkit's GoogLeNet
(``inception_4a_*``), so that "unfreeze the top N blocks" counts modules: the stem's convs
``conv1`` .. ``conv3`` (``conv1_conv``, ``conv1_bn``, ``conv1_relu``) and its three concatenating
steps ``inception_3a``, ``inception_4a``, ``inception_5a``; the four Inception-A modules
``inception_5b`` .. ``inception_5e``; Reduction-A ``inception_6a``; the seven Inception-B modules
``inception_6b`` .. ``inception_6h``; Reduction-B ``inception_7a``; the three Inception-C modules
``inception_7b`` .. ``inception_7d``. Each module ends in its concatenation ``<module>_concat``.
Head: ``avg_pool``, ``dropout`` (keep 0.8), ``predictions``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

__all__ = ["conv_bn", "inception_v4", "stem"]

BN_EPSILON = 1e-3


def conv_bn(
    x: Any, filters: int, kernel: int | tuple[int, int], name: str, *, strides: int = 1, padding: str = "same"
) -> Any:
    """Bias-free conv (``{name}_conv``), BN (``{name}_bn``, scale and offset), ReLU (``{name}_relu``)."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _max_pool(x: Any, name: str) -> Any:
    return layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _avg_pool(x: Any, name: str) -> Any:
    # 3x3/1 "same": TensorFlow's and Keras' average pooling leave the padding out of the mean.
    return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def _concat(branches: list[Any], name: str) -> Any:
    return layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)


def stem(x: Any) -> Any:
    """Figure 3: 299x299x3 -> 35x35x384 (shared with Inception-ResNet-v2 in the paper)."""
    x = conv_bn(x, 32, 3, "conv1", strides=2, padding="valid")  # 149
    x = conv_bn(x, 32, 3, "conv2", padding="valid")  # 147
    x = conv_bn(x, 64, 3, "conv3")  # 147
    a = _max_pool(x, "inception_3a_pool")
    b = conv_bn(x, 96, 3, "inception_3a_b1", strides=2, padding="valid")
    x = _concat([a, b], "inception_3a")  # 73x73x160
    a = conv_bn(x, 64, 1, "inception_4a_b0_1")
    a = conv_bn(a, 96, 3, "inception_4a_b0_2", padding="valid")
    b = conv_bn(x, 64, 1, "inception_4a_b1_1")
    b = conv_bn(b, 64, (7, 1), "inception_4a_b1_2")
    b = conv_bn(b, 64, (1, 7), "inception_4a_b1_3")
    b = conv_bn(b, 96, 3, "inception_4a_b1_4", padding="valid")
    x = _concat([a, b], "inception_4a")  # 71x71x192
    a = conv_bn(x, 192, 3, "inception_5a_b0", strides=2, padding="valid")
    b = _max_pool(x, "inception_5a_pool")
    return _concat([a, b], "inception_5a")  # 35x35x384


def _inception_a(x: Any, name: str) -> Any:
    """Figure 4: 35x35x384 -> 35x35x384."""
    b0 = conv_bn(_avg_pool(x, f"{name}_pool"), 96, 1, f"{name}_b0")
    b1 = conv_bn(x, 96, 1, f"{name}_b1")
    b2 = conv_bn(conv_bn(x, 64, 1, f"{name}_b2_1"), 96, 3, f"{name}_b2_2")
    b3 = conv_bn(x, 64, 1, f"{name}_b3_1")
    b3 = conv_bn(conv_bn(b3, 96, 3, f"{name}_b3_2"), 96, 3, f"{name}_b3_3")
    return _concat([b0, b1, b2, b3], name)


def reduction_a(x: Any, name: str, k: int, l: int, m: int, n: int) -> Any:  # noqa: E741  (the paper's letters)
    """Figure 7 with Table 1's k, l, m, n (Inception-v4: 192, 224, 256, 384)."""
    b0 = _max_pool(x, f"{name}_pool")
    b1 = conv_bn(x, n, 3, f"{name}_b1", strides=2, padding="valid")
    b2 = conv_bn(conv_bn(x, k, 1, f"{name}_b2_1"), l, 3, f"{name}_b2_2")
    b2 = conv_bn(b2, m, 3, f"{name}_b2_3", strides=2, padding="valid")
    return _concat([b0, b1, b2], name)


def _inception_b(x: Any, name: str) -> Any:
    """Figure 5: 17x17x1024 -> 17x17x1024."""
    b0 = conv_bn(_avg_pool(x, f"{name}_pool"), 128, 1, f"{name}_b0")
    b1 = conv_bn(x, 384, 1, f"{name}_b1")
    b2 = conv_bn(x, 192, 1, f"{name}_b2_1")
    b2 = conv_bn(conv_bn(b2, 224, (1, 7), f"{name}_b2_2"), 256, (7, 1), f"{name}_b2_3")
    b3 = conv_bn(x, 192, 1, f"{name}_b3_1")
    b3 = conv_bn(conv_bn(b3, 192, (1, 7), f"{name}_b3_2"), 224, (7, 1), f"{name}_b3_3")
    b3 = conv_bn(conv_bn(b3, 224, (1, 7), f"{name}_b3_4"), 256, (7, 1), f"{name}_b3_5")
    return _concat([b0, b1, b2, b3], name)


def _reduction_b(x: Any, name: str) -> Any:
    """Figure 8: 17x17x1024 -> 8x8x1536."""
    b0 = _max_pool(x, f"{name}_pool")
    b1 = conv_bn(x, 192, 1, f"{name}_b1_1")
    b1 = conv_bn(b1, 192, 3, f"{name}_b1_2", strides=2, padding="valid")
    b2 = conv_bn(x, 256, 1, f"{name}_b2_1")
    b2 = conv_bn(conv_bn(b2, 256, (1, 7), f"{name}_b2_2"), 320, (7, 1), f"{name}_b2_3")
    b2 = conv_bn(b2, 320, 3, f"{name}_b2_4", strides=2, padding="valid")
    return _concat([b0, b1, b2], name)


def _inception_c(x: Any, name: str) -> Any:
    """Figure 6: 8x8x1536 -> 8x8x1536."""
    b0 = conv_bn(_avg_pool(x, f"{name}_pool"), 256, 1, f"{name}_b0")
    b1 = conv_bn(x, 256, 1, f"{name}_b1")
    b2 = conv_bn(x, 384, 1, f"{name}_b2")
    b2a = conv_bn(b2, 256, (1, 3), f"{name}_b2_a")
    b2b = conv_bn(b2, 256, (3, 1), f"{name}_b2_b")
    b3 = conv_bn(x, 384, 1, f"{name}_b3_1")
    b3 = conv_bn(conv_bn(b3, 448, (1, 3), f"{name}_b3_2"), 512, (3, 1), f"{name}_b3_3")
    b3a = conv_bn(b3, 256, (3, 1), f"{name}_b3_a")
    b3b = conv_bn(b3, 256, (1, 3), f"{name}_b3_b")
    return _concat([b0, b1, b2a, b2b, b3a, b3b], name)


def inception_v4(
    *,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (299, 299, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Inception-v4 (Figure 9): the stem, 4 x Inception-A, Reduction-A, 7 x Inception-B,
    Reduction-B, 3 x Inception-C, average pooling, dropout (keep 0.8) and a softmax layer.

    42,679,816 trainable parameters with 1000 classes: timm's ``inception_v4`` count (its
    classifier has 1,537,000 of them). ``include_top=False`` returns ``inception_7d_concat``
    (8x8x1536 at 299x299). The valid-padded stem needs inputs of at least 75x75.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = stem(inputs)
    for i in "bcde":
        x = _inception_a(x, f"inception_5{i}")
    x = reduction_a(x, "inception_6a", 192, 224, 256, 384)
    for i in "bcdefgh":
        x = _inception_b(x, f"inception_6{i}")
    x = _reduction_b(x, "inception_7a")
    for i in "bcd":
        x = _inception_c(x, f"inception_7{i}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name="inception_v4")
