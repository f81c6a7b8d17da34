"""The lecture notes' figures about a model, set beside the layer table that checks them.

Each note quotes what the CS231n notes state about a model and sets it beside the
value :func:`tlkit.inspection.layer_table` computes (``tlkit inspect NAME`` prints them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The figures are about one configuration of the model, so
# a note applies only to a table of that configuration; any other table gets one line
# saying so instead (`tlkit inspect vgg16_tlkit --input-size 64 64` is not 224x224).


@dataclass(frozen=True)
class _TableView:
    """A table's rows by layer name, and its totals: what a note's text reads."""

    rows: dict[str, dict[str, Any]]
    totals: dict[str, Any]


@dataclass(frozen=True)
class SeedNote:
    """What the lecture notes state about one model, checked against its table.

    ``input_shape``: the input the figures are about (None: figures that hold at any
    input size, such as a parameter count under a global-pooling head).
    ``whole_model``: the figures count the whole registered network, so a table whose
    parameter count differs from the registry's (the convolutional body, another
    number of classes) is another configuration.
    ``about``: what the figures are, for the line a table of another configuration gets.
    ``text``: the note, from a :class:`_TableView` of the table.
    """

    about: str
    input_shape: tuple[int, int, int] | None
    whole_model: bool
    text: Callable[[_TableView], str]


def _registered_params(name: str) -> int:
    from tlkit.registry import get_spec  # light: no Keras

    params = get_spec(name).params
    assert params is not None, name  # every model with a seed note has a published count
    return params


def _vgg16_note(t: _TableView) -> str:
    act = t.totals["activations"]
    return (
        f"CS231n's VGG16 walk-through gives 'TOTAL memory: 24M * 4 bytes ~= 93MB / image' "
        f"(a copy of the slides: 96MB); the rows it lists sum to {act:,} activations "
        f"({4 * act / 1e6:.1f} MB at float32, {8 * act / 1e6:.1f} MB with the backward pass), "
        f"the figure this table reproduces. Its 138M parameters agree."
    )


def alexnet_conv1_figures(conv1: dict[str, Any]) -> dict[str, int]:
    """The notes' CONV1 arithmetic from tlkit's conv1 row: outputs, weights, biases,
    parameters, parameters per neuron (one filter and its bias) and the parameters
    conv1 would need without parameter sharing (one such set per output)."""
    filters = int(conv1["output_shape"][-1])
    per_neuron = conv1["params"] // filters
    return {
        "outputs": conv1["activations"],
        "weights": conv1["weights"],
        "biases": conv1["biases"],
        "params": conv1["params"],
        "per_neuron": per_neuron,
        "unshared": conv1["activations"] * per_neuron,
    }


def _alexnet_note(t: _TableView, *, grouped: bool) -> str:
    c = alexnet_conv1_figures(t.rows["conv1"])
    shape = "x".join(str(v) for v in t.rows["conv1"]["output_shape"])
    head = (
        f"CS231n's AlexNet CONV1 is the conv1 row: {shape} = {c['outputs']:,} outputs, "
        f"{c['weights']:,} weights + {c['biases']} biases = {c['params']:,} parameters (the slides "
        f"round it to '35K'; one copy says '36K', but {c['params']:,} rounds to "
        f"{round(c['params'] / 1e3)}K); without parameter sharing it would need "
        f"{c['outputs']:,} x {c['per_neuron']} = {c['unshared']:,}. "
    )
    params = t.totals["params"]
    if grouped:
        return head + (
            f"The notes' '60M parameters' is this two-GPU form of the paper: {params:,} "
            f"({params / 1e6:.1f}M, so 60M rounds down)."
        )
    return head + (
        f"The notes' '60M parameters' is the paper's two-GPU form (alexnet_grouped: "
        f"{_registered_params('alexnet_grouped'):,}); this single-tower form has {params:,}."
    )


def _googlenet_note(t: _TableView) -> str:
    params = t.totals["params"]
    alexnet, vgg16 = _registered_params("alexnet_grouped"), _registered_params("vgg16")
    return (
        f"CS231n says GoogLeNet has 'only 5 million parameters, 12x less than AlexNet, 27x less "
        f"than VGG-16' (the notes: '4M, compared to AlexNet with 60M'); this builder of the paper's "
        f"Table 1 has {params:,} ({params / 1e6:.1f}M; {params - t.rows['predictions']['params']:,} "
        f"without the 1000-way classifier; the paper's Table 1 'params' column sums to about "
        f"6.8M): {alexnet / params:.1f}x fewer than AlexNet's {alexnet:,} (alexnet_grouped) and "
        f"{vgg16 / params:.1f}x fewer than VGG-16's {vgg16:,}."
    )


def _inception_naive_note(t: _TableView) -> str:
    r = t.rows
    shape = "x".join(str(v) for v in r["inception"]["output_shape"])
    return (
        f"CS231n lecture 9's naive Inception module on 28x28x256: output {shape} and '854M ops', "
        f"both reproduced: {t.totals['mult_adds']:,} multiply-adds (1x1 "
        f"{r['inception_1x1']['mult_adds']:,} + 3x3 {r['inception_3x3']['mult_adds']:,} + 5x5 "
        f"{r['inception_5x5']['mult_adds']:,}; the pool has none)."
    )


def _inception_reduced_note(t: _TableView) -> str:
    total, conv3 = t.totals["mult_adds"], t.rows["inception_3x3"]["mult_adds"]
    return (
        f"CS231n lecture 9 gives '358M ops' for this module; the six convolutions it lists "
        f"sum to {total:,} multiply-adds ({_human(total)}). 358M is {total + conv3:,}: this plus "
        f"the 3x3 convolution's {conv3:,} once more (or the 3x3 on 128 channels instead of the "
        f"64 its bottleneck leaves)."
    )


def _stack_note(t: _TableView, *, layers: int) -> str:
    c = int(t.rows["input"]["output_shape"][-1])
    w = sum(r["weights"] for r in t.rows.values())
    b = sum(r["biases"] for r in t.rows.values())
    rf = _fmt_rf(tuple(t.rows[f"conv{layers}"]["receptive_field"]))
    coeff = w // (c * c)
    other = (
        "one 7x7 convolution needs 49C^2 (`tlkit inspect one_7x7`)"
        if layers == 3
        else "three stacked 3x3 convolutions see the same with 27C^2 (`tlkit inspect three_3x3`)"
    )
    what = (
        "three stacked 3x3 convolutions on C channels see" if layers == 3 else "one 7x7 convolution on C channels sees"
    )
    return (
        f"CS231n: {what} {rf}x{rf} with {coeff}C^2 parameters: here {w:,} weights = {coeff} x {c}^2 "
        f"(plus {b} biases, which the notes leave out); {other}."
    )


SEED_NOTES: dict[str, SeedNote] = {
    "vgg16": SeedNote(
        "CS231n's VGG16 figures (24M activations, 93MB, 138M parameters)", (224, 224, 3), True, _vgg16_note
    ),
    "alexnet": SeedNote(
        "CS231n's AlexNet figures (CONV1 55x55x96, 34,944 parameters, 60M)",
        (227, 227, 3),
        True,
        lambda t: _alexnet_note(t, grouped=False),
    ),
    "alexnet_grouped": SeedNote(
        "CS231n's AlexNet figures (CONV1 55x55x96, 34,944 parameters, 60M)",
        (227, 227, 3),
        True,
        lambda t: _alexnet_note(t, grouped=True),
    ),
    "googlenet": SeedNote("CS231n's GoogLeNet parameter counts (5M, 4M)", None, True, _googlenet_note),
    "inception_naive": SeedNote(
        "CS231n's naive Inception module figures (28x28x672, 854M ops)", (28, 28, 256), False, _inception_naive_note
    ),
    "inception_reduced": SeedNote(
        "CS231n's Inception module figures (28x28x480, 358M ops)", (28, 28, 256), False, _inception_reduced_note
    ),
    "three_3x3": SeedNote("CS231n's 27C^2 and 7x7 figures", None, False, lambda t: _stack_note(t, layers=3)),
    "one_7x7": SeedNote("CS231n's 49C^2 figure", None, False, lambda t: _stack_note(t, layers=1)),
}
SEED_NOTES["vgg16_tlkit"] = SEED_NOTES["vgg16"]


def seed_notes(key: str, table: dict[str, Any]) -> list[str]:
    """The lecture notes' figures about ``key`` set beside ``table`` (a :func:`layer_table`),
    or one line saying they are about another configuration; [] if the notes state none."""
    note = SEED_NOTES.get(key)
    if note is None:
        return []
    shape = (
        tuple(table["input_shape"]) if table["input_shape"] and not isinstance(table["input_shape"][0], list) else None
    )
    params = table["totals"]["params"]
    expected = _registered_params(key) if note.whole_model else None
    wrong_shape = note.input_shape is not None and shape != tuple(note.input_shape)
    wrong_params = expected is not None and params != expected
    if not (wrong_shape or wrong_params):
        rows = {r["layer"]: r for r in table["rows"]}
        return [note.text(_TableView(rows, table["totals"]))]
    about = []
    if note.input_shape is not None:
        about.append(f"{'x'.join(map(str, note.input_shape))} input")
    if expected is not None:
        about.append(f"the whole network ({expected:,} parameters)")
    this = []
    if wrong_shape:
        this.append(f"{'x'.join(map(str, shape or ()))} input")
    if wrong_params:
        this.append(f"{params:,} parameters")
    return [
        (
            f"{note.about} are about {' and '.join(about)}; this table is for {' and '.join(this)}, "
            f"so it does not check them (`tlkit inspect {key}` does)."
        )
    ]


def _human(n: float) -> str:
    from tlkit.inspection import (
        _human as human,  # imported late: tlkit.inspection imports this module
    )

    return human(n)


def _fmt_rf(rf: tuple[int, int]) -> str:
    from tlkit.inspection import _fmt_rf as fmt

    return fmt(rf)
