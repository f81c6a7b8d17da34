"""LeNet-5 and the CS231n CIFAR-10 example: specs (builders in lenet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import LAYER_BLOCKS
from tlkit.registry import ModelSpec, register

# --- LeNet and the CS231n CIFAR-10 example ---------------------------------
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="lenet5",
        family="lenet",
        builder="tlkit.models.lenet:lenet5",
        input_shape=(32, 32, 1),
        preprocessing="unit",
        num_classes=10,
        fixed_input=True,
        layers={"pool2": "pool2", "fc6": "fc6", "fc7": "fc7", "penultimate": "fc7", "classifier": "fc8"},
        params=61_706,
        params_source="computed from LeCun et al. 1998 with full C3 connectivity: "
        "C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850",
        description="LeNet-5: CONV-POOL-CONV-POOL-FC-FC-FC on 32x32 grayscale",
    )
)
register(
    ModelSpec(
        blocks=LAYER_BLOCKS,
        name="cifar_example",
        family="lenet",
        builder="tlkit.models.lenet:cifar_example",
        input_shape=(32, 32, 3),
        preprocessing="unit",
        num_classes=10,
        fixed_input=True,
        layers={"pool1": "pool1", "penultimate": "pool1", "classifier": "fc"},
        params=31_066,
        params_source="computed: CONV 3x3x3x12+12 = 336, FC 16*16*12*10+10 = 30,730",
        description="CS231n example INPUT[32x32x3]-CONV(12)-RELU-POOL-FC(10)",
    )
)
