"""All-CNN models A, B and C and Network in Network: specs (builders in allcnn.py)."""

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

# Models A and B (Table 1) and their variants. The paper's Table 3 gives only rounded counts
# (A: Strided ≈0.9M, ConvPool/All ≈1.28M; B: Strided ≈1M, ConvPool/All ≈1.35M); the exact
# counts are the builder's, checked against arithmetic in tests/test_models_notes.py.
_PAPER = "Springenberg et al. 2015, Tables 1 and 3"
_AB = {
    "a": {"strided": (839_242, "≈0.9M"), "convpool": (1_254_250, "≈1.28M"), "all": (1_254_250, "≈1.28M")},
    "b": {"strided": (885_610, "≈1M"), "convpool": (1_300_618, "≈1.35M"), "all": (1_300_618, "≈1.35M")},
}
_PAPER_NAME = {"all": "All-CNN", "strided": "Strided-CNN", "convpool": "ConvPool-CNN"}
for _model, _variants in _AB.items():
    _top = {"a": ("conv6", "conv7"), "b": ("conv8", "conv9")}[_model]
    for _variant, (_p, _rounded) in _variants.items():
        _title = f"{_PAPER_NAME[_variant]}-{_model.upper()}"
        register(
            ModelSpec(
                blocks=LAYER_BLOCKS,
                name=f"allcnn_{_model}" if _variant == "all" else f"allcnn_{_variant}_{_model}",
                family="allcnn",
                builder="tlkit.models.allcnn:allcnn",
                input_shape=(32, 32, 3),
                preprocessing="unit",
                num_classes=10,
                layers={"penultimate": _top[0], "classifier": _top[1]},
                builder_kwargs={"variant": _variant, "model": _model},
                params=_p,
                params_source=f"{COMPUTED}; {_PAPER} round it to {_rounded} ({_title})",
                description=f"{_title}, Springenberg et al. 2015",
            ),
            aliases=(f"{_PAPER_NAME[_variant].lower().replace('-', '_')}_{_model}",),
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
