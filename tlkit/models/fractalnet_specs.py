"""FractalNet for CIFAR: specs (builder in fractalnet.py)."""

from __future__ import annotations

from tlkit.registry import ModelSpec, register

register(
    ModelSpec(
        blocks=r"^(block\d+)_",
        name="fractalnet20",
        family="fractalnet",
        builder="tlkit.models.fractalnet:fractalnet",
        input_shape=(32, 32, 3),
        preprocessing="unit",
        num_classes=10,
        layers={"top": "block5_pool", "avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"},
        builder_kwargs={"columns": 3},
        min_input=32,
        params=33_724_618,
        params_source=(
            "computed (B=5 blocks, C=3 columns, channels 64-128-256-512-512, BN, 10-way FC), equal to "
            "osmr/imgclsmob's fractalnet_cifar10; Larsson et al. 2016 quote 38.6M for 20 layers, "
            "which this reading of their section 4 does not reproduce"
        ),
        description="FractalNet, 20 layers (Larsson et al. 2016; B=5, C=3, mean joins, no drop-path)",
    ),
    aliases=("fractalnet",),
)
