"""DenseNet (tlkit's builder): specs (builder in densenet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import DENSENET_TAPS, GAP, STAGE_BLOCKS
from tlkit.registry import ModelSpec, register

# --- DenseNet ------------------------------------------------------------------
register(
    ModelSpec(
        blocks=STAGE_BLOCKS,
        name="densenet121_tlkit",
        family="densenet",
        builder="tlkit.models.densenet:densenet",
        input_shape=(224, 224, 3),
        preprocessing="torch",
        layers={"top": "relu", **GAP, **DENSENET_TAPS},
        builder_kwargs={"blocks": (6, 12, 24, 16), "growth_rate": 32},
        params=7_978_856,
        params_source="Huang et al. 2017; torchvision densenet121 count",
        description="DenseNet-121 (BC, growth 32)",
    )
)
