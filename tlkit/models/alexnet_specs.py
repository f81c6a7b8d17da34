"""AlexNet and ZFNet: specs and the paper's layer names (builders in alexnet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import CLASSIC, COMPUTED, LAYER_BLOCKS
from tlkit.registry import ModelSpec, register

# --- AlexNet / ZFNet ---------------------------------------------------------
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="alexnet",
        family="alexnet",
        builder="tlkit.models.alexnet:alexnet",
        input_shape=(227, 227, 3),
        preprocessing="caffe",
        fixed_input=True,
        layers=CLASSIC,
        params=62_378_344,
        params_source="Krizhevsky et al. 2012, single-tower form with the paper's "
        "96/256/384/384/256 filters and 227x227 input (torchvision's 64/192/384/256/256 variant has 61,100,840)",
        min_input=67,
        description="AlexNet, single tower, LRN after pool1 and pool2",
    )
)
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="alexnet_grouped",
        family="alexnet",
        builder="tlkit.models.alexnet:alexnet",
        input_shape=(227, 227, 3),
        preprocessing="caffe",
        fixed_input=True,
        layers=CLASSIC,
        builder_kwargs={"two_tower": True},
        params=60_965_224,
        params_source="Krizhevsky et al. 2012 two-tower form: conv2/4/5 grouped (groups=2)",
        min_input=67,
        description="AlexNet with the original two-GPU grouped connectivity",
    )
)
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="zfnet",
        family="alexnet",
        builder="tlkit.models.alexnet:zfnet",
        input_shape=(224, 224, 3),
        preprocessing="caffe",
        fixed_input=True,
        layers=CLASSIC,
        params=107_627_624,
        params_source=COMPUTED + " (ZFNet with CS231n's 512/1024/512 middle layers)",
        min_input=53,
        description="ZFNet: CONV1 7x7/2, CONV3/4/5 with 512/1024/512 filters",
    )
)
