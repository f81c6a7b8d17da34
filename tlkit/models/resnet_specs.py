"""ResNet v1/v2, Wide ResNet, ResNeXt: specs (builder in resnet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import COMPUTED, GAP, STAGE_BLOCKS, resnet_taps
from tlkit.registry import ModelSpec, register

# --- ResNet family (tlkit's builders, the papers' form as torchvision builds it: no conv biases,
# stride on the 3x3 conv of a bottleneck ("v1.5"; the same parameter count as the paper's v1)) ---
_RESNET_TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# v2 (pre-activation) counts: computed from the builder and by independent arithmetic in the tests.
_RESNET_V2 = {18: 11_687_720, 34: 21_795_880, 50: 25_549_352, 101: 44_541_480, 152: 60_185_128}
for _depth, _p in _RESNET_TORCHVISION.items():
    _n = f"resnet{_depth}" if _depth in (18, 34) else f"resnet{_depth}_tlkit"
    _top = "conv5_block2_out" if _depth == 18 else "conv5_block3_out"
    register(
        ModelSpec(
            blocks=STAGE_BLOCKS,
            name=_n,
            family="resnet",
            builder="tlkit.models.resnet:resnet",
            input_shape=(224, 224, 3),
            preprocessing="torch",
            layers={"top": _top, **GAP, **resnet_taps(_depth, 1)},
            builder_kwargs={"depth": _depth, "version": 1},
            params=_p,
            params_source=f"He et al. 2016; torchvision resnet{_depth} count",
            description=f"ResNet-{_depth} v1 (paper form, no conv biases; v1.5 stride placement)",
        )
    )
    _n2 = f"resnet{_depth}v2" if _depth in (18, 34) else f"resnet{_depth}v2_tlkit"
    register(
        ModelSpec(
            blocks=STAGE_BLOCKS,
            name=_n2,
            family="resnet",
            builder="tlkit.models.resnet:resnet",
            input_shape=(224, 224, 3),
            preprocessing="torch",
            layers={"top": "post_relu", **GAP, **resnet_taps(_depth, 2)},
            builder_kwargs={"depth": _depth, "version": 2},
            params=_RESNET_V2[_depth],
            params_source=COMPUTED + " (pre-activation: no stem BN, BN before each block, post_bn)",
            description=f"ResNet-{_depth} v2, pre-activation (He et al. 2016, identity mappings)",
        )
    )
for _name, _kw, _p, _src in [
    ("wide_resnet50_2", {"depth": 50, "width_factor": 2}, 68_883_240, "torchvision wide_resnet50_2"),
    ("wide_resnet101_2", {"depth": 101, "width_factor": 2}, 126_886_696, "torchvision wide_resnet101_2"),
    ("resnext50_32x4d", {"depth": 50, "groups": 32, "width_per_group": 4}, 25_028_904, "torchvision resnext50_32x4d"),
    (
        "resnext101_32x8d",
        {"depth": 101, "groups": 32, "width_per_group": 8},
        88_791_336,
        "torchvision resnext101_32x8d",
    ),
]:
    register(
        ModelSpec(
            blocks=STAGE_BLOCKS,
            name=_name,
            family="resnet",
            builder="tlkit.models.resnet:resnet",
            input_shape=(224, 224, 3),
            preprocessing="torch",
            layers={"top": "conv5_block3_out", **GAP, **resnet_taps(_kw["depth"], 1)},
            builder_kwargs={"version": 1, **_kw},
            params=_p,
            params_source=_src,
            description=_name.replace("_", " "),
        )
    )
