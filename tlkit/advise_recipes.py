"""Which regularisation options ``tlkit advise`` recommends, from ``benchmarks/bench_recipes.py``'s evidence.

The benchmark finetunes EfficientNet-Lite0 (ImageNet weights, 96x96, 3+5 epochs, ~13 steps an
epoch) on two tasks made from scikit-image's photos, 3 seeds each: ``fine`` (single-label,
10 look-alike texture classes, 20 training images per class; figure: test top-1) and ``multi``
(multi-label composites of 8 objects; figure: test macro AP). :data:`FIGURES` quotes what it
recorded in ``benchmarks/results/recipes.json`` (an installed package cannot read that file;
``tests/test_advise_recipes.py`` checks that the two agree; ``python benchmarks/bench_recipes.py
--print-figures benchmarks/results/recipes.json`` prints the literal). ``None`` until recorded.

The rules (:func:`recommend`), one per option, for the data's kind (``fine`` figures for
single-label data, ``multi`` for multi-label):

* An option is recommended only when it **won beyond the seed spread** on that task: its worst
  seed above the baseline's best. Otherwise advise says it is not recommended and quotes the
  figures (mean difference and both ranges), so the user sees how large the measured effect was.
* **mixup / cutmix** are not recommended with fewer than :data:`MIX_MIN_PER_CLASS` images per
  class (the median; for multi-label data, positives per label) whatever the benchmark says: a
  mixed image teaches a blend of two classes, and with a few images per class there are few
  clean ones left to learn each class from (the benchmark's 20 per class is such data).
* **EMA** is not recommended for a run too short to reach its decay: tlkit's EMA warms up
  (``tlkit.finetune.ema``: after ``t`` updates it moves with decay ``min(DECAY, (1 + t) / (10 + t))``,
  one average across both stages), so a run of ``n`` steps with ``n`` under ``(10 DECAY - 1) / (1 - DECAY)``
  (890 for 0.99) ends at decay ``(1 + n) / (10 + n)``: the average covers only about its last
  ``(10 + n) / 9`` steps, little to smooth.
* Data far larger than the benchmark's (median per class at least :data:`BEYOND_EVIDENCE` times
  its 20) gets, for an option not recommended, a note that the evidence does not cover it.
"""

from __future__ import annotations

import math
from typing import Any

# Recorded by benchmarks/bench_recipes.py (see the module docstring); None until recorded.
FIGURES: dict[str, Any] | None = {
    "epochs": [3, 5],
    "per_class_train": 20,
    "tasks": {
        "fine": {
            "figure": "top1",
            "configs": {
                "baseline": {"mean": 0.8767, "min": 0.865, "max": 0.895, "verdict": "reference"},
                "label_smoothing": {"mean": 0.88, "min": 0.87, "max": 0.89, "verdict": "within spread"},
                "mixup": {"mean": 0.88, "min": 0.875, "max": 0.89, "verdict": "within spread"},
                "cutmix": {"mean": 0.865, "min": 0.855, "max": 0.875, "verdict": "within spread"},
                "randaugment": {"mean": 0.8667, "min": 0.835, "max": 0.895, "verdict": "within spread"},
                "ema": {"mean": 0.89, "min": 0.86, "max": 0.925, "verdict": "within spread"},
                "timm": {"mean": 0.8533, "min": 0.825, "max": 0.87, "verdict": "within spread"},
            },
        },
        "multi": {
            "figure": "macro_ap",
            "configs": {
                "baseline": {"mean": 0.8942, "min": 0.886, "max": 0.905, "verdict": "reference"},
                "label_smoothing": {"mean": 0.8778, "min": 0.8661, "max": 0.8894, "verdict": "within spread"},
                "mixup": {"mean": 0.8843, "min": 0.8628, "max": 0.8954, "verdict": "within spread"},
                "cutmix": {"mean": 0.8548, "min": 0.8482, "max": 0.862, "verdict": "loses"},
                "randaugment": {"mean": 0.884, "min": 0.8796, "max": 0.8903, "verdict": "within spread"},
                "ema": {"mean": 0.89, "min": 0.8819, "max": 0.8992, "verdict": "within spread"},
                "timm": {"mean": 0.8256, "min": 0.8066, "max": 0.8362, "verdict": "loses"},
            },
        },
    },
}

OPTIONS: dict[str, dict[str, Any]] = {
    "label_smoothing": {"flags": ["--label-smoothing", "0.1"], "what": "label smoothing 0.1"},
    "mixup": {"flags": ["--mixup", "0.2"], "what": "mixup (alpha 0.2)"},
    "cutmix": {"flags": ["--cutmix", "1.0"], "what": "cutmix (alpha 1.0)"},
    "randaugment": {"flags": ["--randaugment", "2,9"], "what": "RandAugment (2 ops, magnitude 9)"},
    "ema": {"flags": ["--ema", "0.99"], "what": "EMA of the weights (decay 0.99)"},
}
MIX_MIN_PER_CLASS = 100  # median images per class (positives per label) below which mixup/cutmix are not advised
EMA_WARMUP = 10.0  # tlkit.finetune.ema.WARMUP: decay min(DECAY, (1 + t) / (EMA_WARMUP + t)) after t updates
BEYOND_EVIDENCE = 10  # data with this many times the benchmark's images per class is outside its evidence
BENCH = "benchmarks/bench_recipes.py"


def _task(multi_label: bool) -> str:
    return "multi" if multi_label else "fine"


def _span(f: dict[str, Any]) -> str:
    return f"{f['mean']:.3f} ({f['min']:.3f}..{f['max']:.3f})"


def stage_steps(train_images: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of ``epochs``: batches per epoch (the last one partial) times epochs."""
    return math.ceil(train_images / max(1, batch_size)) * epochs


def ema_steps_to_reach(decay: float) -> int:
    """Updates after which the warmed-up EMA's decay ``(1 + t) / (EMA_WARMUP + t)`` reaches ``decay``."""
    return math.ceil((EMA_WARMUP * decay - 1) / (1 - decay) - 1e-9)


def recommend(
    *,
    multi_label: bool,
    per_class_median: float,
    train_images: int,
    batch_size: int = 32,
    run_epochs: int = 10,
    figures: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One entry per option of :data:`OPTIONS`: ``{"option", "flags", "recommend", "reason"}``.

    ``figures`` defaults to :data:`FIGURES`; ``run_epochs``: both stages' epochs of the run advised.
    """
    figs = FIGURES if figures is None else figures
    task = _task(multi_label)
    rows = ((figs or {}).get("tasks") or {}).get(task, {})
    configs = rows.get("configs", {})
    base = configs.get("baseline")
    bench_per_class = (figs or {}).get("per_class_train", 20)
    run_steps = stage_steps(train_images, batch_size, run_epochs)
    unit = "positives per label" if multi_label else "images per class"
    out = []
    for name, opt in OPTIONS.items():
        got = configs.get(name)
        if not figs or got is None or base is None:
            ok, why = False, f"not measured yet: run {BENCH} (advise recommends only what won there)"
        else:
            fig = rows.get("figure", "top1")
            quoted = (
                f"{BENCH}, {task} task, test {fig} over 3 seeds: {_span(got)} vs baseline {_span(base)}, "
                f"{got['mean'] - base['mean']:+.3f}"
            )
            ok = got["verdict"] == "wins"
            why = f"{'won' if ok else 'did not win'} beyond the seed spread ({got['verdict']}): {quoted}"
            if not ok and per_class_median >= BEYOND_EVIDENCE * bench_per_class:
                why += (
                    f"; measured with {bench_per_class} {unit}, your data has {per_class_median:g}: "
                    "outside this evidence, where long schedules use it (timm) it may help"
                )
        if name in ("mixup", "cutmix") and per_class_median < MIX_MIN_PER_CLASS:
            ok = False
            why += (
                f"; and not with few examples: median {per_class_median:g} {unit} < {MIX_MIN_PER_CLASS} "
                "(a mixed image teaches a blend of two classes; few clean images per class remain)"
            )
        if name == "ema":
            decay = float(opt["flags"][1])
            need = ema_steps_to_reach(decay)
            if run_steps < need:
                ok = False
                reached = min(decay, (1 + run_steps) / (EMA_WARMUP + run_steps))
                why += (
                    f"; and not with few steps: this run has {run_steps} steps, under the {need} the EMA's warm-up "
                    f"needs to reach decay {decay:g} (it ends at {reached:.3f}, averaging about the last "
                    f"{(EMA_WARMUP + run_steps) / (EMA_WARMUP - 1):.0f} steps)"
                )
        out.append({"option": name, "flags": list(opt["flags"]), "recommend": ok, "reason": f"{opt['what']}: {why}"})
    return out


def extra_flags(recommendations: list[dict[str, Any]]) -> str:
    """The recommended options' flags, as one string to append to a ``tlkit finetune`` command."""
    return "".join(" " + " ".join(r["flags"]) for r in recommendations if r["recommend"])


def multi_label_reasons(m: dict[str, Any]) -> list[str]:
    """What advise says about multi-label data: positives per label and the thresholds finetune picks."""
    pos = m.get("positives", {})
    rare = sorted(pos.items(), key=lambda kv: kv[1])[:3]
    lines = [
        f"multi-label data: {m['images']:,} images, {m['classes']} labels, "
        f"{m.get('labels_per_image', 0):.2f} labels per image on average; positives per label median "
        f"{m['per_class']['median']:g} (min {m['per_class']['min']}, max {m['per_class']['max']})"
        + (("; rarest: " + ", ".join(f"{k} {v}" for k, v in rare)) if rare else ""),
        "finetune trains a sigmoid head with binary cross-entropy and picks one threshold per label on the "
        "validation split (the one maximising that label's F1, stored in the run): keep positives of every "
        "label in validation",
    ]
    return lines
