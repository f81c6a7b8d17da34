"""Shared conv / BatchNorm / ReLU helpers and the block-naming convention of
tlkit's ResNet and DenseNet builders (backend-neutral Keras 3).

Layer-name convention (shared with keras.applications ResNet and DenseNet, so
feature taps and "unfreeze the top N blocks" work the same on both):

* stem: every layer before the first block (``conv1_*``, ``pool1*``);
* a block: every layer whose name starts with ``conv{S}_block{I}_`` (stage ``S``
  from 2, block ``I`` from 1), e.g. ``conv3_block2_2_conv``;
* a DenseNet transition between dense blocks: ``pool{S}_*`` for ``S >= 2``
  (``pool2_bn``, ``pool2_conv``, ``pool2_pool``);
* post: the final normalization after the last block (``post_bn``/``post_relu``
  in pre-activation ResNets, ``bn``/``relu`` in DenseNet);
* head: ``avg_pool`` (GlobalAveragePooling2D) then ``predictions`` (Dense).

:func:`tlkit.finetune.heads.layer_blocks` groups layers by these prefixes for "unfreeze the
top N blocks".
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

# torch.nn.BatchNorm2d defaults: eps 1e-5, and torch's momentum 0.1 weights the
# *new* batch statistic, which is Keras' momentum 0.9 (weight of the old value).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def conv_init(mode: str = "fan_out") -> keras.initializers.Initializer:
    """He (Kaiming) normal init, as torchvision initializes ResNet ("fan_out") and
    DenseNet ("fan_in") convs. A fresh instance per layer: Keras warns when one
    unseeded initializer instance is reused, since it would repeat its values."""
    return keras.initializers.VarianceScaling(scale=2.0, mode=mode, distribution="untruncated_normal")


def batch_norm(x: Any, name: str) -> Any:
    """BatchNormalization over channels with torch's eps and momentum."""
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def conv(
    x: Any, filters: int, kernel: int, *, name: str, strides: int = 1, groups: int = 1, init_mode: str = "fan_out"
) -> Any:
    """A bias-free conv named ``{name}_conv``.

    Kernels larger than 1 get an explicit symmetric ``{name}_pad`` (kernel // 2)
    and "valid" padding: Keras' "same" pads a stride-2 conv on an even input only
    at the bottom/right, while the papers (and torchvision) pad both sides, so
    explicit padding keeps the sampling grid identical to torch weights.
    """
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="valid",
        groups=groups,
        use_bias=False,
        kernel_initializer=conv_init(init_mode),
        name=f"{name}_conv",
    )(x)


def conv_bn(
    x: Any,
    filters: int,
    kernel: int,
    *,
    name: str,
    strides: int = 1,
    groups: int = 1,
    relu: bool = True,
    init_mode: str = "fan_out",
) -> Any:
    """Conv, BN (``{name}_bn``) and optionally ReLU (``{name}_relu``): the
    post-activation unit of ResNet v1 (the BN supplies the bias)."""
    x = conv(x, filters, kernel, name=name, strides=strides, groups=groups, init_mode=init_mode)
    x = batch_norm(x, f"{name}_bn")
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def bn_relu(x: Any, name: str) -> Any:
    """BN (``{name}_bn``) then ReLU (``{name}_relu``): a pre-activation."""
    x = batch_norm(x, f"{name}_bn")
    return layers.Activation("relu", name=f"{name}_relu")(x)


def classifier_head(x: Any, *, num_classes: int, classifier_activation: str | None) -> Any:
    """Global average pool (``avg_pool``) and the classifier (``predictions``)."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
