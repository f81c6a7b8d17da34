"""VGG configurations A-E: specs and the paper's layer names (builder in vgg.py)."""

from __future__ import annotations

from tlkit.models._spec_common import CLASSIC, VGG_TAPS
from tlkit.registry import ModelSpec, register

# --- VGG (Simonyan & Zisserman 2015, Table 1; Table 2 rounds to millions, exact counts as torchvision) --
for _name, _cfg, _params, _aliases in [
    ("vgg11", "A", 132_863_336, ("vgg_a",)),
    ("vgg11_lrn", "A-LRN", 132_863_336, ("vgg_a_lrn",)),
    ("vgg13", "B", 133_047_848, ("vgg_b",)),
    ("vgg16c", "C", 133_638_952, ("vgg_c",)),
    ("vgg16_tlkit", "D", 138_357_544, ("vgg_d",)),
    ("vgg19_tlkit", "E", 143_667_240, ("vgg_e",)),
]:
    register(
        ModelSpec(
            name=_name,
            family="vgg",
            builder="tlkit.models.vgg:vgg",
            input_shape=(224, 224, 3),
            preprocessing="caffe",
            fixed_input=True,
            layers={**CLASSIC, **VGG_TAPS},
            blocks=r"^(conv\d+)_\d+$",  # conv3_1, conv3_2, ... form block conv3
            builder_kwargs={"config": _cfg},
            params=_params,
            params_source=f"VGG paper Table 2 (config {_cfg}, in millions); exact count as torchvision",
            description=f"VGG configuration {_cfg}",
        ),
        aliases=_aliases,
    )
