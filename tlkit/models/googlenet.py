"""GoogLeNet / Inception v1 in the paper's form (Keras 3 functional builder)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.models.layers import LocalResponseNormalization

# Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Table 1's "output size" depth column, which each module must reproduce.
TABLE_DEPTHS: dict[str, int] = {
    "3a": 256,
    "3b": 480,
    "4a": 512,
    "4b": 512,
    "4c": 512,
    "4d": 528,
    "4e": 832,
    "5a": 832,
    "5b": 1024,
}


def _lrn(name: str) -> LocalResponseNormalization:
    # BVLC GoogLeNet's LRN: local_size 5, alpha 1e-4, beta 0.75, k 1 in Caffe's
    # convention, where alpha is divided by the window size: 1e-4 / 5 here.
    return LocalResponseNormalization(size=5, k=1.0, alpha=1e-4 / 5, beta=0.75, name=name)


def _conv(x: Any, filters: int, kernel: int, name: str, strides: int = 1) -> Any:
    # The paper's form: conv + bias + ReLU, no batch normalization.
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu", name=name)(x)


def inception_module(
    x: Any,
    *,
    filters_1x1: int,
    filters_3x3_reduce: int,
    filters_3x3: int,
    filters_5x5_reduce: int,
    filters_5x5: int,
    pool_proj: int,
    name: str,
) -> Any:
    """One Inception module (Szegedy et al. 2015, Fig. 2b, "with dimension reductions").

    Four parallel branches, concatenated on the channel axis, so the output depth
    is ``filters_1x1 + filters_3x3 + filters_5x5 + pool_proj``:
    1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5 (the paper's 5x5, not two 3x3s);
    3x3/1 max pool -> 1x1 projection. Layers are named ``{name}_1x1``,
    ``{name}_3x3_reduce``, ..., and the concatenation is ``name`` itself.
    """
    b1 = _conv(x, filters_1x1, 1, f"{name}_1x1")
    b2 = _conv(x, filters_3x3_reduce, 1, f"{name}_3x3_reduce")
    b2 = _conv(b2, filters_3x3, 3, f"{name}_3x3")
    b3 = _conv(x, filters_5x5_reduce, 1, f"{name}_5x5_reduce")
    b3 = _conv(b3, filters_5x5, 5, f"{name}_5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = _conv(b4, pool_proj, 1, f"{name}_pool_proj")
    return layers.Concatenate(axis=-1, name=name)([b1, b2, b3, b4])


def _inception(x: Any, key: str) -> Any:
    f1, r3, f3, r5, f5, pp = INCEPTION_TABLE[key]
    return inception_module(
        x,
        filters_1x1=f1,
        filters_3x3_reduce=r3,
        filters_3x3=f3,
        filters_5x5_reduce=r5,
        filters_5x5=f5,
        pool_proj=pp,
        name=f"inception_{key}",
    )


def _aux_classifier(x: Any, *, num_classes: int, classifier_activation: str | None, name: str) -> Any:
    """The paper's auxiliary classifier (sec. 5): 5x5/3 average pool (4x4 at 14x14),
    1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, linear FC to the classes."""
    x = layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    x = _conv(x, 128, 1, f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name=name)(x)


def googlenet(
    *,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    aux_classifiers: bool = False,
) -> keras.Model:
    """GoogLeNet (Szegedy et al. 2015, "Going deeper with convolutions"), Table 1.

    conv1 7x7/2 (112) -> pool1 3x3/2 (56) -> norm1 -> conv2_reduce 1x1 64 ->
    conv2 3x3 192 -> norm2 -> pool2 3x3/2 (28) -> inception_3a, 3b -> pool3 (14) ->
    inception_4a..4e -> pool4 (7) -> inception_5a, 5b -> avg_pool (global) ->
    dropout 0.4 -> predictions. Every conv has a bias and ReLU; no batch norm.
    Pools use "same" padding, which gives Caffe's ceil-mode sizes (112 -> 56 -> 28 -> 14 -> 7).

    ``aux_classifiers=True`` adds the two training-time auxiliary classifiers
    after inception_4a and inception_4d; the model then has three outputs, named
    "predictions", "aux1", "aux2" (the paper weights the aux losses by 0.3).
    The auxiliary heads flatten a 4x4 map, so they need the 224x224 input.

    ``include_top=False`` returns the ``inception_5b`` feature map (7x7x1024 at
    224x224), without auxiliary heads, whatever ``aux_classifiers`` says.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(inputs, 64, 7, "conv1", strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = _lrn("norm1")(x)
    x = _conv(x, 64, 1, "conv2_reduce")
    x = _conv(x, 192, 3, "conv2")
    x = _lrn("norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = _inception(x, "3a")
    x = _inception(x, "3b")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = _inception(x, "4a")
    aux1_input = x
    x = _inception(x, "4b")
    x = _inception(x, "4c")
    x = _inception(x, "4d")
    aux2_input = x
    x = _inception(x, "4e")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool4")(x)
    x = _inception(x, "5a")
    x = _inception(x, "5b")
    if not include_top:
        return keras.Model(inputs, x, name="googlenet")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    if not aux_classifiers:
        return keras.Model(inputs, outputs, name="googlenet")
    aux1 = _aux_classifier(
        aux1_input, num_classes=num_classes, classifier_activation=classifier_activation, name="aux1"
    )
    aux2 = _aux_classifier(
        aux2_input, num_classes=num_classes, classifier_activation=classifier_activation, name="aux2"
    )
    return keras.Model(inputs, [outputs, aux1, aux2], name="googlenet_aux")
