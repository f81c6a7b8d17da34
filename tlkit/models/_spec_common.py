"""Facts shared by several families' spec files (no Keras import)."""

from __future__ import annotations

# For architectures with no exact published count: the builder's count, kept as a regression guard.
COMPUTED = "computed from the builder; no exact published count"

# The paper's layer names of the classic nets (pool5, fc6, fc7, fc8) and the generic taps.
CLASSIC = {"pool5": "pool5", "fc6": "fc6", "fc7": "fc7", "fc8": "fc8", "penultimate": "fc7", "classifier": "fc8"}
# Unfreezing blocks of the classic nets: one layer per block (conv1, cccp1, fc6, ...).
LAYER_BLOCKS = r"^(conv\d+|cccp\d+|fc\d+)$"
# ResNet/DenseNet (tlkit and keras.applications name them alike): conv3_block2_...
STAGE_BLOCKS = r"^(conv\d+_block\d+)_"
GAP = {"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"}


def stride_taps(*layers: str) -> dict[str, str]:
    """Segmentation taps (:mod:`tlkit.segment.taps`): ``stride2`` .. ``stride32`` name the feature map at
    each stride, given from stride 2 to 32 (the last layer at that stride every path goes through)."""
    return {f"stride{2 ** (i + 1)}": name for i, name in enumerate(layers)}


# VGG's pools end each stride; pool3 / pool4 are FCN's names for the stride-8 / 16 skips.
VGG_TAPS = {"pool3": "pool3", "pool4": "pool4", **stride_taps("pool1", "pool2", "pool3", "pool4", "pool5")}

# ResNet blocks per stage (conv2_x .. conv5_x), He et al. 2016 Table 1 (as tlkit.models.resnet.STAGES).
RESNET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_taps(depth: int, version: int, *, keras_v2: bool = False) -> dict[str, str]:
    """Stride taps of a ResNet: v1, each stage's last block output; tlkit's v2 (stride in a stage's first
    block), the pre-activation of the next stage's first block; Keras' v2 (stride in a stage's last block,
    its shortcut a 1x1 max pool of the block input), the output of the block before it."""
    n = RESNET_STAGES[depth]
    if version == 1:
        return stride_taps("conv1_relu", *(f"conv{k + 2}_block{n[k]}_out" for k in range(4)))
    if keras_v2:
        return stride_taps("conv1_conv", *(f"conv{k + 2}_block{n[k] - 1}_out" for k in range(3)), "post_relu")
    return stride_taps("conv1_conv", *(f"conv{k}_block1_preact_relu" for k in (3, 4, 5)), "post_relu")


# DenseNet: each transition's 1x1 conv (before its 2x2 average pool) ends a stride.
DENSENET_TAPS = stride_taps("conv1_relu", "pool2_conv", "pool3_conv", "pool4_conv", "relu")
