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
