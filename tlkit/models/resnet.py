"""ResNet v1 and v2, Wide ResNet and ResNeXt (Keras 3 functional builder).

The v1 form is the paper's as torchvision implements it: bias-free convs each
followed by BatchNorm (eps 1e-5, torch momentum 0.1), the bottleneck's stride on
its 3x3 conv ("ResNet v1.5"), and a 1x1 conv + BN projection shortcut wherever
the shape changes. Layer names follow keras.applications (see
:mod:`tlkit.models._blocks` for the block-prefix convention).
"""

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

__all__ = ["STAGES", "resnet"]

# He et al. 2016, Table 1: blocks per stage (conv2_x .. conv5_x) and block type.
STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_PLANES = (64, 128, 256, 512)  # per-stage base width; bottlenecks output 4x this
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _basic_v1(x: Any, planes: int, stride: int, name: str) -> Any:
    shortcut = x
    if stride != 1 or x.shape[-1] != planes:
        shortcut = conv_bn(x, planes, 1, strides=stride, relu=False, name=f"{name}_0")
    y = conv_bn(x, planes, 3, strides=stride, name=f"{name}_1")
    y = conv_bn(y, planes, 3, relu=False, name=f"{name}_2")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _bottleneck_v1(x: Any, planes: int, width: int, groups: int, stride: int, name: str) -> Any:
    out_ch = planes * _EXPANSION["bottleneck"]
    shortcut = x
    if stride != 1 or x.shape[-1] != out_ch:
        shortcut = conv_bn(x, out_ch, 1, strides=stride, relu=False, name=f"{name}_0")
    y = conv_bn(x, width, 1, name=f"{name}_1")
    # v1.5: the stride sits on the 3x3 conv (torchvision), not the first 1x1 (the
    # paper, keras.applications), which would discard 3/4 of the input unseen.
    y = conv_bn(y, width, 3, strides=stride, groups=groups, name=f"{name}_2")
    y = conv_bn(y, out_ch, 1, relu=False, name=f"{name}_3")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _preact_shortcut(x: Any, preact: Any, out_ch: int, stride: int, name: str) -> Any:
    # He et al. 2016b: an identity shortcut carries the raw input, untouched by BN
    # or ReLU; a projection is taken from the pre-activated input (the activation
    # is shared "before splitting into two paths").
    if stride != 1 or x.shape[-1] != out_ch:
        return conv(preact, out_ch, 1, strides=stride, name=f"{name}_0")
    return x


def _basic_v2(x: Any, planes: int, stride: int, name: str) -> Any:
    preact = bn_relu(x, f"{name}_preact")
    shortcut = _preact_shortcut(x, preact, planes, stride, name)
    y = conv_bn(preact, planes, 3, strides=stride, name=f"{name}_1")
    # The last conv has no BN: the next block's (or post_bn's) pre-activation follows the add.
    y = conv(y, planes, 3, name=f"{name}_2")
    return layers.Add(name=f"{name}_out")([shortcut, y])


def _bottleneck_v2(x: Any, planes: int, width: int, groups: int, stride: int, name: str) -> Any:
    out_ch = planes * _EXPANSION["bottleneck"]
    preact = bn_relu(x, f"{name}_preact")
    shortcut = _preact_shortcut(x, preact, out_ch, stride, name)
    y = conv_bn(preact, width, 1, name=f"{name}_1")
    y = conv_bn(y, width, 3, strides=stride, groups=groups, name=f"{name}_2")
    y = conv(y, out_ch, 1, name=f"{name}_3")
    return layers.Add(name=f"{name}_out")([shortcut, y])


def _model_name(depth: int, version: int, width_factor: int, groups: int, width_per_group: int) -> str:
    if groups > 1:
        base = f"resnext{depth}_{groups}x{width_per_group * width_factor}d"
    elif width_factor > 1:
        base = f"wide_resnet{depth}_{width_factor}"
    else:
        base = f"resnet{depth}"
    return base + ("v2" if version == 2 else "")


def resnet(
    *,
    depth: int,
    version: int = 1,
    width_factor: int = 1,
    groups: int = 1,
    width_per_group: int = 64,
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """ResNet of ``depth`` 18, 34, 50, 101 or 152.

    * ``version=1``: He et al. 2016, "Deep Residual Learning for Image
      Recognition" (post-activation), torchvision's v1.5 form.
    * ``version=2``: He et al. 2016, "Identity Mappings in Deep Residual
      Networks" (pre-activation): each block starts with BN-ReLU
      (``_preact_bn``/``_preact_relu``), a projection shortcut is taken from the
      pre-activated input, the block ends in the bare add (``_out``), and the
      network ends in ``post_bn``/``post_relu``. The stem is conv1 then max pool;
      the first block's pre-activation is the paper's "activation right after
      conv1" (the arrangement of keras.applications ResNetV2).
    * ``width_factor=k`` (bottleneck only): Wide ResNet (Zagoruyko & Komodakis
      2016) as torchvision's ``wide_resnet50_2``: the inner 1x1/3x3 width is k times
      larger, the block output is unchanged.
    * ``groups``/``width_per_group`` (bottleneck only): ResNeXt (Xie et al. 2017,
      "Aggregated Residual Transformations"), inner width
      ``int(planes * width_per_group / 64) * groups`` with a grouped 3x3 conv;
      ``groups=32, width_per_group=4`` is resnext50_32x4d.

    Layers: stem ``conv1_pad``/``conv1_conv``/``conv1_bn``/``conv1_relu`` (v2 has
    no stem BN/ReLU), ``pool1_pad``/``pool1_pool``; blocks ``conv{S}_block{I}_*``
    ending in ``conv{S}_block{I}_out``; head ``avg_pool`` then ``predictions``.
    ``include_top=False`` returns the last feature map (the last ``_out`` for v1,
    ``post_relu`` for v2).
    """
    if depth not in STAGES:
        raise ModelError(f"ResNet depth must be one of {sorted(STAGES)}, got {depth!r}")
    if version not in (1, 2):
        raise ModelError(f"ResNet version must be 1 or 2, got {version!r}")
    if width_factor < 1 or groups < 1 or width_per_group < 1:
        raise ModelError("width_factor, groups and width_per_group must be >= 1")
    kind, counts = STAGES[depth]
    if kind == "basic" and (width_factor != 1 or groups != 1 or width_per_group != 64):
        # As torchvision: widening and cardinality are defined on the bottleneck.
        raise ModelError(
            f"ResNet-{depth} uses basic blocks; width_factor, groups and "
            "width_per_group apply to bottleneck depths 50/101/152 only"
        )

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    if version == 1:
        x = conv_bn(inputs, 64, 7, strides=2, name="conv1")
    else:
        x = conv(inputs, 64, 7, strides=2, name="conv1")
    # Zero padding equals torch's -inf max-pool padding after a ReLU (v1), where
    # every value is >= 0; v2 pools the raw conv output, as keras.applications does.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    for stage, (planes, n_blocks) in enumerate(zip(_PLANES, counts), start=2):
        width = int(planes * width_per_group * width_factor / 64) * groups
        for i in range(1, n_blocks + 1):
            # Stage conv2 follows the max pool at stride 1; later stages halve the
            # resolution in their first block.
            stride = 2 if (i == 1 and stage > 2) else 1
            name = f"conv{stage}_block{i}"
            if kind == "basic":
                x = (_basic_v1 if version == 1 else _basic_v2)(x, planes, stride, name)
            else:
                block = _bottleneck_v1 if version == 1 else _bottleneck_v2
                x = block(x, planes, width, groups, stride, name)
    if version == 2:
        x = batch_norm(x, "post_bn")
        x = layers.Activation("relu", name="post_relu")(x)
    if include_top:
        x = classifier_head(x, num_classes=num_classes, classifier_activation=classifier_activation)
    return keras.Model(inputs, x, name=_model_name(depth, version, width_factor, groups, width_per_group))
