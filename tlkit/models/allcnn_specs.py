"""All-CNN-C family and Network in Network: specs (builders in allcnn.py)."""

from __future__ import annotations

from tlkit.models._spec_common import COMPUTED, LAYER_BLOCKS
from tlkit.registry import ModelSpec, register

# --- All-CNN and Network-in-Network (CIFAR-10 sized) --------------------------
for _name, _variant, _p, _src in [
    ("allcnn_c", "all", 1_369_738, "computed from Springenberg et al. 2015, Table 2 (model C)"),
    ("allcnn_strided", "strided", 954_730, COMPUTED + " (Strided-CNN-C)"),
    ("allcnn_convpool", "convpool", 1_369_738, COMPUTED + " (ConvPool-CNN-C)"),
]:
    register(
        ModelSpec(
            blocks=LAYER_BLOCKS,
            name=_name,
            family="allcnn",
            builder="tlkit.models.allcnn:allcnn",
            input_shape=(32, 32, 3),
            preprocessing="unit",
            num_classes=10,
            layers={"penultimate": "conv8", "classifier": "conv9"},
            builder_kwargs={"variant": _variant},
            params=_p,
            params_source=_src,
            description=f"All-CNN-C family ({_variant}), Springenberg et al. 2015",
        )
    )
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="nin",
        family="allcnn",
        builder="tlkit.models.allcnn:nin",
        input_shape=(32, 32, 3),
        preprocessing="unit",
        num_classes=10,
        layers={"penultimate": "cccp5", "classifier": "cccp6"},
        params=966_986,
        params_source="computed from Lin et al. 2014 CIFAR-10 model (192/160/96, 192x3, 192/192/10)",
        description="Network in Network (CIFAR-10)",
    )
)
