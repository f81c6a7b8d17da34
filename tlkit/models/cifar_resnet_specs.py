"""The CIFAR-10 ResNets of He et al. 2015, section 4.2: specs (builder in cifar_resnet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import GAP, STAGE_BLOCKS
from tlkit.registry import ModelSpec, register

# Exact counts (weights + BN scale/offset + the 10-way layer's weights and bias), by the
# arithmetic of tests/test_models_notes.py; the paper's Table 6 "# params" column rounds them.
# The depths the notes and the paper's text name; the builder also takes 32 and 44 (Table 6).
_COUNTS = {
    20: (269_722, "0.27M"),
    56: (853_018, "0.85M"),
    110: (1_727_962, "1.7M"),
    1202: (19_421_274, "19.4M"),
}
for _depth, (_p, _rounded) in _COUNTS.items():
    _n = (_depth - 2) // 6
    register(
        ModelSpec(
            blocks=STAGE_BLOCKS,
            name=f"resnet{_depth}_cifar",
            family="cifar_resnet",
            builder="tlkit.models.cifar_resnet:cifar_resnet",
            input_shape=(32, 32, 3),
            preprocessing="unit",
            num_classes=10,
            layers={"top": f"conv4_block{_n}_out", **GAP},
            builder_kwargs={"depth": _depth},
            params=_p,
            params_source=f"He et al. 2015, Table 6 ({_rounded}, option A shortcuts); exact count by arithmetic",
            description=f"ResNet-{_depth} for CIFAR-10 (He et al. 2015, sec. 4.2; 6n+2, n={_n})",
        ),
        aliases=(f"cifar_resnet{_depth}",),
    )
