"""AlexNet and ZFNet (Keras 3 functional builders, the papers' layer names)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.models.layers import LocalResponseNormalization


def fc_head(
    x: Any, *, num_classes: int, classifier_activation: str | None, units: int = 4096, dropout: float = 0.5
) -> Any:
    """The classic fully connected head: flatten, fc6, drop6, fc7, drop7, fc8.

    Shared by AlexNet, ZFNet and VGG, which all end in two 4096-unit ReLU layers
    regularized by dropout 0.5 and a linear classifier (Krizhevsky et al. 2012).
    """
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(units, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name="fc8")(x)


def alexnet(
    *,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (227, 227, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    two_tower: bool = False,
) -> keras.Model:
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep CNNs").

    227x227x3 -> conv1 96 11x11/4 (55x55) -> pool1 3x3/2 (27) -> norm1 -> conv2 256 5x5
    pad 2 -> pool2 (13) -> norm2 -> conv3 384, conv4 384, conv5 256 (3x3 pad 1) ->
    pool5 (6x6x256) -> fc6 4096 -> drop6 -> fc7 4096 -> drop7 -> fc8.

    The input is 227, not the paper's stated 224: only 227 makes (W - 11)/4 + 1 an
    integer (55). Pooling is overlapping (3x3, stride 2). LRN (k=2, n=5,
    alpha=1e-4, beta=0.75) follows pool1 and pool2 as in the BVLC Caffe reference
    model; the paper normalizes before pooling, which changes no parameter count.

    ``two_tower=True`` keeps the paper's two-GPU connectivity: conv2, conv4 and
    conv5 see only the kernel maps of their own GPU, expressed as ``groups=2``
    (conv3 and the FC layers connect across towers, as in the paper). That removes
    half the weights of those three layers: 60,965,224 parameters instead of
    62,378,344 for 1000 classes.

    ``include_top=False`` returns the ``pool5`` feature map.
    """
    groups = 2 if two_tower else 1
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(96, 11, strides=4, padding="valid", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = LocalResponseNormalization(name="norm1")(x)
    x = layers.Conv2D(256, 5, padding="same", groups=groups, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = LocalResponseNormalization(name="norm2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=groups, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=groups, activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if include_top:
        x = fc_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name="alexnet_grouped" if two_tower else "alexnet")


def zfnet(
    *,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """ZFNet (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks").

    The paper's Fig. 3 architecture with the wider middle layers of its Table 2
    ("layers 3,4,5: 512, 1024, 512 maps"), as summarized in the CS231n notes:

    224x224x3 -> conv1 96 7x7/2 pad 1 (110) -> pool1 3x3/2 same (55) -> norm1 ->
    conv2 256 5x5/2 valid (26) -> pool2 3x3/2 same (13) -> norm2 -> conv3 512,
    conv4 1024, conv5 512 (3x3 same) -> pool5 3x3/2 valid (6x6x512) -> fc6 4096 ->
    drop6 -> fc7 4096 -> drop7 -> fc8.

    conv1 uses an explicit 1-pixel zero padding (``conv1_pad``) because Keras'
    "same" padding would give 112, not the paper's 110. The feature maps are
    "contrast normalized across feature maps" in the paper; AlexNet's LRN
    parameters are used for that.

    ``include_top=False`` returns the ``pool5`` feature map.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.ZeroPadding2D(1, name="conv1_pad")(inputs)
    x = layers.Conv2D(96, 7, strides=2, padding="valid", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = LocalResponseNormalization(name="norm1")(x)
    x = layers.Conv2D(256, 5, strides=2, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = LocalResponseNormalization(name="norm2")(x)
    x = layers.Conv2D(512, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(1024, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(512, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool5")(x)
    if include_top:
        x = fc_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name="zfnet")
