"""Figures of the CS231n notes' Conv layer and layer-patterns sections, for :mod:`tlkit.seed_numbers`.

Each function adds its section's figures through ``add`` (one row of ``docs/seed_numbers.md``
each, in the table's order): the output-size formula on the notes' examples, AlexNet's CONV1
and total, and three 3x3 convolutions against one 7x7. The source names and the small
helpers every section uses (shapes, millions, the formula through
:func:`tlkit.inspection.conv_output_size`) live here too; the case studies are
:mod:`tlkit.seed_figures_cases`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlkit.seed_numbers import Tables

# seed_numbers' row collector: add(key, claim, source, stated, value, shown, command, why, unit=1).
Add = Callable[..., None]

# Sources, as short names for the table (the notes are CS231n's, cs231n.github.io).
NOTES_CONV = "CS231n notes, *Convolutional Neural Networks*: the Conv layer"
NOTES_PATTERNS = "CS231n notes, *Convolutional Neural Networks*: layer patterns"
NOTES_FC_CONV = "CS231n notes, *Convolutional Neural Networks*: converting FC layers to CONV layers"
NOTES_CASES = "CS231n notes, *Convolutional Neural Networks*: case studies"
NOTES_VGG = "CS231n notes, *Convolutional Neural Networks*: VGGNet in detail"
SLIDES = "CS231n lecture 9 slides, *CNN Architectures*"
NOT_AN_INTEGER = "not an integer"  # a claim that (W - F + 2P)/S + 1 does not fit


def _shape(row: dict[str, Any]) -> str:
    return "x".join(str(v) for v in row["output_shape"])


def _m(n: float) -> str:
    return f"{n / 1e6:.1f}M"


def _formula(W: int, F: int, S: int, P: int) -> tuple[float, str]:
    """(W - F + 2P)/S + 1 through :func:`tlkit.inspection.conv_output_size`: its value, and
    how tlkit answers (the size, or the refusal of hyperparameters that do not tile)."""
    from tlkit.errors import ConfigError
    from tlkit.inspection import conv_output_size

    try:
        size = conv_output_size(W, F, S, P)
        return size, str(size)
    except ConfigError:
        raw = (W - F + 2 * P) / S + 1
        return raw, f"{raw:g}: refused (ConfigError: not an integer)"


def _formula_cmd(W: int, F: int, S: int, P: int) -> str:
    return f'python -c "from tlkit.inspection import conv_output_size as f; print(f({W}, {F}, {S}, {P}))"'


def _formula_figures(t: Tables, add: Add) -> None:
    """The output-size formula (W - F + 2P)/S + 1 on the notes' examples."""
    fits = "(W - F + 2P)/S + 1 with W={}, F={}, S={}, P={} gives {}"
    for W, F, S, P, claim, stated, why in [
        (7, 3, 1, 0, fits.format(7, 3, 1, 0, 5), 5, "(7 - 3 + 0)/1 + 1 = 5"),
        (7, 3, 2, 0, fits.format(7, 3, 2, 0, 3), 3, "(7 - 3 + 0)/2 + 1 = 3"),
        (227, 11, 4, 0, fits.format(227, 11, 4, 0, 55), 55, "(227 - 11 + 0)/4 + 1 = 55: AlexNet's CONV1"),
        (
            10,
            3,
            2,
            0,
            "W=10, F=3, S=2, P=0 do not fit: (10 - 3 + 0)/2 + 1 = 4.5, not an integer",
            4.5,
            "tlkit computes 4.5 and refuses these hyperparameters, as the notes say one must",
        ),
        (
            224,
            11,
            4,
            0,
            ("the AlexNet paper's 224x224 input is surely incorrect: (224 - 11)/4 + 1 is not an integer"),
            NOT_AN_INTEGER,
            "(224 - 11)/4 + 1 = 54.25; tlkit's alexnet takes 227x227",
        ),
    ]:
        value, shown = _formula(W, F, S, P)
        if stated == NOT_AN_INTEGER:
            value = NOT_AN_INTEGER if value != int(value) else str(value)
        add(f"output_size_{W}_{F}_{S}_{P}", claim, NOTES_CONV, stated, value, shown, _formula_cmd(W, F, S, P), why)


def _alexnet_figures(t: Tables, add: Add) -> None:
    """AlexNet's CONV1 (shape, outputs, weights, parameters, without sharing) and AlexNet's total."""
    from tlkit.inspection import alexnet_conv1_figures

    conv1 = t.row("alexnet", "conv1")
    c = alexnet_conv1_figures(conv1)
    cmd = "tlkit inspect alexnet  (row conv1)"
    add(
        "alexnet_conv1_shape",
        "AlexNet CONV1, 96 filters 11x11x3 stride 4 on 227x227x3, gives 55x55x96",
        NOTES_CONV,
        "55x55x96",
        _shape(conv1),
        _shape(conv1),
        cmd,
        "the conv1 row's output shape",
    )
    add(
        "alexnet_conv1_outputs",
        "55x55x96 = 290,400 outputs (neurons)",
        NOTES_CONV,
        290_400,
        c["outputs"],
        f"{c['outputs']:,}",
        cmd,
        "the conv1 row's activations",
    )
    add(
        "alexnet_conv1_weights",
        "96 x 11 x 11 x 3 = 34,848 weights",
        NOTES_CONV,
        34_848,
        c["weights"],
        f"{c['weights']:,}",
        cmd,
        "the conv1 row's weights",
    )
    add(
        "alexnet_conv1_params",
        "34,848 weights + 96 biases = 34,944 parameters",
        NOTES_CONV,
        34_944,
        c["params"],
        f"{c['params']:,}",
        cmd,
        "the conv1 row's weights + biases",
    )
    add(
        "alexnet_conv1_35k",
        "CONV1 parameters: (11*11*3)*96 = 35K",
        SLIDES,
        35e3,
        c["params"],
        f"{c['params']:,}",
        cmd,
        f"{c['params']:,} rounds to 35K",
        unit=1e3,
    )
    add(
        "alexnet_conv1_36k",
        "CONV1 parameters: 36K (another copy of the slide)",
        SLIDES,
        36e3,
        c["params"],
        f"{c['params']:,}",
        cmd,
        f"{c['params']:,} rounds to 35K, not 36K ({(36e3 - c['params']) / c['params']:.1%} high)",
        unit=1e3,
    )
    add(
        "alexnet_conv1_unshared",
        "without parameter sharing: 290,400 x 364 = 105,705,600 parameters",
        NOTES_CONV,
        105_705_600,
        c["unshared"],
        f"{c['outputs']:,} x {c['per_neuron']} = {c['unshared']:,}",
        cmd + " and its seed note",
        "outputs x (11*11*3 weights + 1 bias) per neuron",
    )
    grouped = t.get("alexnet_grouped")["totals"]["params"]
    single = t.get("alexnet")["totals"]["params"]
    add(
        "alexnet_params",
        "AlexNet: 60M parameters",
        NOTES_CASES,
        60e6,
        grouped,
        f"{grouped:,} (two-GPU form; single tower {single:,})",
        "tlkit inspect alexnet_grouped",
        f"the paper's two-GPU form has {_m(grouped)}, which rounds to 61M; '60M' rounds down "
        f"(the single-tower form has {_m(single)})",
        unit=1e6,
    )


def _small_filter_figures(t: Tables, add: Add) -> None:
    """Three stacked 3x3 convolutions against one 7x7: receptive field and parameters."""
    stack = t.get("three_3x3")
    c_in = int(stack["input_shape"][-1])
    stack_w = sum(r["weights"] for r in stack["rows"])
    rf = "x".join(str(v) for v in t.row("three_3x3", "conv3")["receptive_field"])
    add(
        "three_3x3_receptive_field",
        "three stacked 3x3 CONV layers (stride 1) see 7x7 of the input",
        NOTES_PATTERNS,
        "7x7",
        rf,
        rf,
        "tlkit inspect three_3x3  (RF column)",
        "receptive field 3 -> 5 -> 7",
    )
    add(
        "three_3x3_params",
        "three 3x3 CONV layers with C channels: 3 x (C x (3x3xC)) = 27C^2 parameters",
        NOTES_PATTERNS,
        27,
        stack_w / c_in**2,
        f"{stack_w / c_in**2:g}C^2 ({stack_w:,} weights at C={c_in})",
        "tlkit inspect three_3x3",
        "weights / C^2; the notes leave the 3C biases out",
    )
    one = t.get("one_7x7")
    one_w = sum(r["weights"] for r in one["rows"])
    add(
        "one_7x7_params",
        "one 7x7 CONV layer with C channels: C x (7x7xC) = 49C^2 parameters",
        NOTES_PATTERNS,
        49,
        one_w / c_in**2,
        f"{one_w / c_in**2:g}C^2 ({one_w:,} weights at C={c_in})",
        "tlkit inspect one_7x7",
        "weights / C^2; the notes leave the C biases out",
    )


CONV_FIGURES = (_formula_figures, _alexnet_figures, _small_filter_figures)
