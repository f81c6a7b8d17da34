"""Figures of the CS231n case studies (GoogLeNet, Inception, VGG, FC layers as convolutions), for
:mod:`tlkit.seed_numbers`.

Each function adds its section's figures through ``add`` (one row of ``docs/seed_numbers.md``
each, in the table's order); models come from the shared :class:`~tlkit.seed_numbers.Tables`,
so a model another section built is not built again. :data:`VGG16_WALKTHROUGH` is the notes'
VGG16 table, row by row, that tlkit's ``inspect vgg16`` must equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlkit.seed_figures_conv import (
    NOTES_CASES,
    NOTES_FC_CONV,
    NOTES_VGG,
    SLIDES,
    Add,
    _formula,
    _formula_cmd,
    _m,
    _shape,
)

if TYPE_CHECKING:
    from tlkit.seed_numbers import Tables

# The VGG16 walk-through's rows (VGGNet in detail): output shape, activations, weights.
VGG16_WALKTHROUGH: list[tuple[list[int], int, int]] = [
    ([224, 224, 3], 150_528, 0),
    ([224, 224, 64], 3_211_264, 1_728),
    ([224, 224, 64], 3_211_264, 36_864),
    ([112, 112, 64], 802_816, 0),
    ([112, 112, 128], 1_605_632, 73_728),
    ([112, 112, 128], 1_605_632, 147_456),
    ([56, 56, 128], 401_408, 0),
    ([56, 56, 256], 802_816, 294_912),
    ([56, 56, 256], 802_816, 589_824),
    ([56, 56, 256], 802_816, 589_824),
    ([28, 28, 256], 200_704, 0),
    ([28, 28, 512], 401_408, 1_179_648),
    ([28, 28, 512], 401_408, 2_359_296),
    ([28, 28, 512], 401_408, 2_359_296),
    ([14, 14, 512], 100_352, 0),
    ([14, 14, 512], 100_352, 2_359_296),
    ([14, 14, 512], 100_352, 2_359_296),
    ([14, 14, 512], 100_352, 2_359_296),
    ([7, 7, 512], 25_088, 0),
    ([4096], 4_096, 7 * 7 * 512 * 4096),
    ([4096], 4_096, 4096 * 4096),
    ([1000], 1_000, 4096 * 1000),
]


def _googlenet_figures(t: Tables, add: Add) -> None:
    """GoogLeNet's parameter count and its ratios to AlexNet and VGG16."""
    grouped = t.get("alexnet_grouped")["totals"]["params"]  # built (and cached) by the AlexNet figures
    g = t.get("googlenet")
    g_params = g["totals"]["params"]
    g_body = g_params - t.row("googlenet", "predictions")["params"]
    vgg16_params = t.get("vgg16")["totals"]["params"]
    src = (
        f"{_m(g_params)}: tlkit's googlenet (the paper's Table 1, no batch norm) has {g_params:,}, "
        f"{g_body:,} without the 1000-way classifier; Table 1's params column sums to about 6.8M"
    )
    add(
        "googlenet_params_5m",
        "GoogLeNet: only 5 million parameters",
        SLIDES,
        5e6,
        g_params,
        f"{g_params:,}",
        "tlkit inspect googlenet",
        src,
        unit=1e6,
    )
    add(
        "googlenet_vs_alexnet",
        "GoogLeNet: 12x less [parameters] than AlexNet",
        SLIDES,
        12,
        grouped / g_params,
        f"{grouped / g_params:.1f}x ({grouped:,} / {g_params:,})",
        "tlkit inspect googlenet  (seed note)",
        f"12x holds only for 60M / 5M; the true counts give {grouped / g_params:.1f}x",
    )
    add(
        "googlenet_vs_vgg16",
        "GoogLeNet: 27x less [parameters] than VGG-16",
        SLIDES,
        27,
        vgg16_params / g_params,
        f"{vgg16_params / g_params:.1f}x ({vgg16_params:,} / {g_params:,})",
        "tlkit inspect googlenet  (seed note)",
        f"27x holds only for 138M / 5M; the true counts give {vgg16_params / g_params:.1f}x",
    )
    add(
        "googlenet_params_4m",
        "GoogLeNet: 4M [parameters], compared to AlexNet with 60M",
        NOTES_CASES,
        4e6,
        g_params,
        f"{g_params:,}",
        "tlkit inspect googlenet",
        src,
        unit=1e6,
    )


def _inception_figures(t: Tables, add: Add) -> None:
    """The naive and the 1x1-reduced Inception module: output shape and multiply-adds."""
    naive = t.get("inception_naive")
    naive_out = _shape(t.row("inception_naive", "inception"))
    add(
        "inception_naive_output",
        "naive Inception module on 28x28x256 (1x1 128, 3x3 192, 5x5 96, 3x3 pool): output 28x28x672",
        SLIDES,
        "28x28x672",
        naive_out,
        naive_out,
        "tlkit inspect inception_naive",
        "128 + 192 + 96 + 256 channels concatenated",
    )
    ops = naive["totals"]["mult_adds"]
    add(
        "inception_naive_ops",
        "naive Inception module: 854M ops",
        SLIDES,
        854e6,
        ops,
        f"{ops:,}",
        "tlkit inspect inception_naive",
        "multiply-adds of the three convolutions; the pool has none",
        unit=1e6,
    )
    red = t.get("inception_reduced")
    red_ops = red["totals"]["mult_adds"]
    conv3 = t.row("inception_reduced", "inception_3x3")["mult_adds"]
    add(
        "inception_reduced_ops",
        "with 64-filter 1x1 bottlenecks before the 3x3 and 5x5 and after the pool: 358M ops",
        SLIDES,
        358e6,
        red_ops,
        f"{red_ops:,}",
        "tlkit inspect inception_reduced",
        f"the six convolutions the slide lists sum to {_m(red_ops)}; 358M is {red_ops + conv3:,}, the "
        f"3x3 convolution's {conv3:,} counted twice",
        unit=1e6,
    )


def _vgg_figures(t: Tables, add: Add) -> None:
    """VGG: the configurations' parameters, the VGG16 walk-through rows, memory and activations."""
    vgg16_params = t.get("vgg16")["totals"]["params"]  # cached by the GoogLeNet figures
    for name, config, stated in [
        ("vgg11", "A", 133),
        ("vgg13", "B", 133),
        ("vgg16c", "C", 134),
        ("vgg16_tlkit", "D", 138),
        ("vgg19_tlkit", "E", 144),
    ]:
        p = t.get(name)["totals"]["params"]
        add(
            f"vgg_{config.lower()}_params",
            f"VGG configuration {config}: {stated} million parameters",
            "CS231n notes, quoting the VGG paper's Table 2",
            stated * 1e6,
            p,
            f"{p:,}",
            f"tlkit inspect {name}",
            f"{p:,} rounds to {stated}M",
            unit=1e6,
        )
    vgg = t.get("vgg16")
    rows = [r for r in vgg["rows"] if not r["view"]]
    matching = (
        sum((r["output_shape"], r["activations"], r["weights"]) == seed for r, seed in zip(rows, VGG16_WALKTHROUGH))
        if len(rows) == len(VGG16_WALKTHROUGH)
        else 0
    )
    add(
        "vgg16_rows",
        f"VGG16 walk-through: {len(VGG16_WALKTHROUGH)} rows of shape, memory and weights",
        NOTES_VGG,
        len(VGG16_WALKTHROUGH),
        matching,
        f"{matching} of {len(VGG16_WALKTHROUGH)} rows equal",
        "tlkit inspect vgg16",
        "every row's output shape, activations and weights",
    )
    add(
        "vgg16_params",
        "VGG16: TOTAL params: 138M parameters",
        NOTES_VGG,
        138e6,
        vgg16_params,
        f"{vgg16_params:,}",
        "tlkit inspect vgg16",
        f"{vgg16_params:,} rounds to 138M",
        unit=1e6,
    )
    add(
        "vgg16_params_140m",
        "VGGNet uses a lot more memory and parameters (140M)",
        NOTES_CASES,
        140e6,
        vgg16_params,
        f"{vgg16_params:,}",
        "tlkit inspect vgg16",
        f"{vgg16_params:,} rounds to 138M; 140M is {(140e6 - vgg16_params) / vgg16_params:.1%} high",
        unit=1e6,
    )
    act = vgg["totals"]["activations"]
    add(
        "vgg16_activations",
        "VGG16: TOTAL memory: 24M [activations]",
        NOTES_VGG,
        24e6,
        act,
        f"{act:,}",
        "tlkit inspect vgg16",
        f"the walk-through's own rows sum to {act:,} ({_m(act)}), not 24M",
        unit=1e6,
    )
    mem = vgg["totals"]["activation_bytes"]
    add(
        "vgg16_memory_93mb",
        "VGG16: 24M * 4 bytes ~= 93MB / image (forward only, ~x2 for backward)",
        NOTES_VGG,
        93e6,
        mem,
        f"{mem:,} bytes ({mem / 1e6:.1f} MB; x2: {2 * mem / 1e6:.1f} MB)",
        "tlkit inspect vgg16",
        f"4 bytes x {act:,} = {mem / 1e6:.1f} MB; even 24M x 4 bytes is 96 MB (91.6 MiB), not 93MB",
        unit=1e6,
    )
    add(
        "vgg16_memory_96mb",
        "VGG16: 24M * 4 bytes ~= 96MB / image (another copy)",
        SLIDES,
        96e6,
        mem,
        f"{mem:,} bytes ({mem / 1e6:.1f} MB)",
        "tlkit inspect vgg16",
        f"right arithmetic on the wrong 24M: 4 bytes x {act:,} = {mem / 1e6:.1f} MB",
        unit=1e6,
    )


def _fc_conv_figures(t: Tables, add: Add) -> None:
    """FC layers as convolutions: VGG16's pool5 at 224 and 384, and the score map it gives."""
    pool5 = t.row("vgg16", "block5_pool")
    add(
        "fc_conv_pool5_224",
        "a 224x224x3 image is reduced to 7x7x512, a reduction by 32",
        NOTES_FC_CONV,
        "7x7x512 /32",
        f"{_shape(pool5)} /{pool5['stride'][0]}",
        f"{_shape(pool5)}, stride {pool5['stride'][0]}",
        "tlkit inspect vgg16  (row block5_pool)",
        "the pool5 row's shape and stride",
    )
    pool5_384 = t.row("vgg16", "block5_pool", (384, 384))
    add(
        "fc_conv_pool5_384",
        "a 384x384 image gives 12x12x512, since 384/32 = 12",
        NOTES_FC_CONV,
        "12x12x512",
        _shape(pool5_384),
        _shape(pool5_384),
        "tlkit inspect vgg16 --input-size 384 384  (row block5_pool)",
        "the pool5 row at 384x384",
    )
    side, shown = _formula(int(pool5_384["output_shape"][0]), 7, 1, 0)
    add(
        "fc_conv_scores_384",
        "FC layers as 7x7, 1x1, 1x1 CONV layers then give 6x6x1000, since (12 - 7)/1 + 1 = 6: 36 locations",
        NOTES_FC_CONV,
        "6x6x1000",
        f"{side:g}x{side:g}x1000",
        f"{side:g}x{side:g}x1000 ({side * side:g} locations)",
        _formula_cmd(int(pool5_384["output_shape"][0]), 7, 1, 0),
        "fc6 as a 7x7 conv on the 12x12 pool5; fc7 and fc8 as 1x1 convs keep 6x6",
    )


CASE_FIGURES = (_googlenet_figures, _inception_figures, _vgg_figures, _fc_conv_figures)
