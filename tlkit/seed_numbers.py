"""Every figure the CS231n notes state about ConvNet architectures, computed by tlkit.

``python -m tlkit.seed_numbers`` builds the models (random weights; about 10 s on a
CPU) and writes ``docs/seed_numbers.md``: one row per figure with the claim, where it
comes from, tlkit's value, the command that computes it and a verdict. ``--check``
writes nothing and exits 1 when the file differs from what the code computes now
(``tests/test_seed_numbers.py`` runs the same comparison).

Verdicts are computed, not written by hand: *reproduced* when tlkit's value, rounded
the way the claim is written (to millions for "138M"), equals the claim; *rounding*
when it does not but lies within 5% of it (a figure rounded the wrong way or
truncated); *wrong* otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Sources, as short names for the table (the notes are CS231n's, cs231n.github.io).
NOTES_CONV = "CS231n notes, *Convolutional Neural Networks*: the Conv layer"
NOTES_PATTERNS = "CS231n notes, *Convolutional Neural Networks*: layer patterns"
NOTES_FC_CONV = "CS231n notes, *Convolutional Neural Networks*: converting FC layers to CONV layers"
NOTES_CASES = "CS231n notes, *Convolutional Neural Networks*: case studies"
NOTES_VGG = "CS231n notes, *Convolutional Neural Networks*: VGGNet in detail"
SLIDES = "CS231n lecture 9 slides, *CNN Architectures*"

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "seed_numbers.md"
TOLERANCE = 0.05  # "rounding": within 5% of tlkit's value
NOT_AN_INTEGER = "not an integer"  # a claim that (W - F + 2P)/S + 1 does not fit

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


@dataclass(frozen=True)
class Figure:
    """One figure the notes state and tlkit's value for it."""

    key: str  # stable id (tests look figures up by it)
    claim: str  # what the notes say, quoted or closely paraphrased
    source: str
    stated: float | str  # the number claimed (a string for shapes and sizes)
    unit: float  # the precision the claim is written in: 1, 1e3 ("35K"), 1e6 ("138M")
    value: float | str  # tlkit's value
    shown: str  # tlkit's value as the table prints it
    command: str
    why: str  # what the verdict rests on

    @property
    def verdict(self) -> str:
        return verdict(self.stated, self.value, self.unit)


def verdict(stated: float | str, value: float | str, unit: float = 1) -> str:
    """``reproduced``, ``rounding`` or ``wrong`` (see the module docstring)."""
    if isinstance(stated, str) or isinstance(value, str):
        return "reproduced" if str(stated) == str(value) else "wrong"
    if math.isclose(round(value / unit) * unit, stated) or math.isclose(value, stated):
        return "reproduced"
    return "rounding" if abs(stated - value) <= TOLERANCE * abs(value) else "wrong"


class Tables:
    """`tlkit inspect` tables, each model built once and released after counting."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, tuple[int, int] | None], dict[str, Any]] = {}

    def get(self, name: str, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
        key = (name, input_size)
        if key not in self._tables:
            import gc

            import keras

            from tlkit.cli.commands.inspect import inspect_model

            self._tables[key] = inspect_model(name, input_size)
            keras.backend.clear_session()  # full VGG holds ~0.5 GB of weights
            gc.collect()
        return self._tables[key]

    def row(self, name: str, layer: str, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
        return next(r for r in self.get(name, input_size)["rows"] if r["layer"] == layer)


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


def compute_figures(tables: Tables | None = None) -> list[Figure]:
    """Every figure, with tlkit's value computed now."""
    import gc

    # Freeze what exists, so the collection after each model scans only that model
    # (a full pass over TensorFlow's object graph costs 0.2-0.5 s each time).
    # A caller that froze objects itself (a test fixture) keeps its own freeze.
    ours = gc.get_freeze_count() == 0
    if ours:
        gc.freeze()
    try:
        return _compute(tables or Tables())
    finally:
        if ours:
            gc.unfreeze()


def _compute(t: Tables) -> list[Figure]:
    out: list[Figure] = []

    def add(
        key: str,
        claim: str,
        source: str,
        stated: float | str,
        value: float | str,
        shown: str,
        command: str,
        why: str,
        unit: float = 1,
    ) -> None:
        out.append(Figure(key, claim, source, stated, unit, value, shown, command, why))

    # --- the output-size formula ---------------------------------------------------
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

    # --- AlexNet CONV1 and AlexNet -------------------------------------------------
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

    # --- small filters: three 3x3 against one 7x7 ------------------------------------
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

    # --- GoogLeNet ---------------------------------------------------------------------
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

    # --- Inception modules ---------------------------------------------------------------
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

    # --- VGG -------------------------------------------------------------------------
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

    # --- FC layers as convolutions ---------------------------------------------------------
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
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(figures: list[Figure]) -> str:
    """The Markdown file ``docs/seed_numbers.md``."""
    counts = {v: sum(f.verdict == v for f in figures) for v in ("reproduced", "rounding", "wrong")}
    intro = (
        "Generated by `python -m tlkit.seed_numbers` from tlkit's own accounting "
        "(`tlkit inspect`, `tlkit.inspection.conv_output_size`); do not edit by hand. "
        "`tests/test_seed_numbers.py` fails when this file and the code disagree."
    )
    rules = (
        "Verdicts are computed: **reproduced** when tlkit's value, rounded the way the claim is "
        'written (to millions for "138M"), equals the claim; **rounding** when it does not but lies '
        f"within {TOLERANCE:.0%} (a figure rounded the wrong way or truncated); **wrong** otherwise. "
        "Parameters are weights + biases, as the notes count them; activations are values per image, "
        "4 bytes each at float32; ops are multiply-adds. The teaching modules (`inception_naive`, "
        "`inception_reduced`, `three_3x3`, `one_7x7`) are known to `tlkit inspect` only, not to "
        "`tlkit models`."
    )
    summary = (
        f"{len(figures)} figures: {counts['reproduced']} reproduced, {counts['rounding']} rounding, "
        f"{counts['wrong']} wrong."
    )
    lines = [
        "# The lecture notes' numbers, computed by tlkit",
        "",
        intro,
        "",
        rules,
        "",
        summary,
        "",
        "| # | figure the notes state | source | tlkit's value | command | verdict | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(figures, start=1):
        lines.append(
            f"| {i} | {_cell(f.claim)} | {_cell(f.source)} | {_cell(f.shown)} | "
            f"`{_cell(f.command)}` | **{f.verdict}** | {_cell(f.why)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlkit.seed_numbers", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the Markdown file (default {DEFAULT_OUT})")
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file differs from what the code computes"
    )
    args = p.parse_args(argv)
    from tlkit._quiet_tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    text = render(compute_figures())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run `python -m tlkit.seed_numbers`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)  # atomic: a reader never sees half a table
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
