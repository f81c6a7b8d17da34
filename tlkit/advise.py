"""``tlkit advise``: which of the four transfer-learning situations your data is in, and what to run.

CS231n's transfer-learning notes (https://cs231n.github.io/transfer-learning/) sort a new
dataset by two questions, *is it small or large?* and *is it similar to ImageNet or
different?*, and give one strategy for each of the four answers. This module answers both
questions with numbers measured on the data, then prints the recipe and the exact
``tlkit`` command for that situation.

What is measured (by :mod:`tlkit.advise_measure`), on a stratified sample of at most :data:`SAMPLE` images (seeded):

* **Size**: images per class, counted from the file list (no image is opened for this).
  *Small* means a median of fewer than :data:`SMALL_PER_CLASS` images per class. The
  notes give no number; 1,000 is just under ImageNet-1k's own ~1,281 training images per
  class, the amount the base learned each of its classes from.
* **Image sizes**: the sample's heights and widths. Images smaller than the base's input
  are trained at a smaller input (upsampling adds no detail, and 64x64 costs 1/12 of
  224x224); images under :data:`TINY_SIDE` pixels are trained without random-crop
  augmentation, which would keep as little as 4x4 pixels of an 8x8 digit.
* **Similarity** (the decision): a linear probe's cross-validated accuracy on the
  pretrained network's penultimate features minus the same probe's accuracy on raw
  16x16 pixels. If the ImageNet features are no better than pixels, the network's top
  layers do not describe this data: *different*. The zero threshold needs no tuning:
  features either add something over the pixels or they do not. Measured with
  EfficientNet-Lite0 on 200 images, seed 0: digits 0.815 features vs 0.875 pixels (-0.06),
  faces 0.990 vs 0.955 (+0.035); over seeds 0-4 the gap is -0.045 to -0.135 for digits and
  +0.015 to +0.045 for faces (faces clear the threshold by a small but steady margin).
* **Confidence** (reported, not decisive): the pretrained ImageNet classifier's mean top-1
  probability and its most frequent classes. Low confidence says no ImageNet *class*
  fits; it does not say ImageNet *features* are useless (ImageNet has no "face" class,
  yet its features separate faces from non-faces at 0.98).
* **Mirroring**: the pixel probe, trained on the images, is also tested on their mirror
  images. A pixel classifier is position-specific, so even symmetric data loses some
  accuracy (faces keep 69-73% of their above-chance accuracy over seeds 0-4); when
  less than :data:`FLIP_RETAINED` is kept, mirrored images look like other classes and flip
  augmentation would teach wrong labels (digits keep 21-32%): ``--no-flip``. Not judged
  (flips stay on, tlkit's default) when the pixel probe beats chance by less than
  :data:`MIN_ABOVE_CHANCE`: there is too little skill to lose.

The probes are ridge classifiers (scikit-learn ``RidgeClassifierCV``: the regularisation
picked by efficient leave-one-out inside each of 5 outer folds): a 10-class logistic
regression on 1,280-d features took 40-100 s on a 2-core CPU, the ridge probe 0.1 s.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tlkit import advise_recipes
from tlkit.advise_measure import MIN_ABOVE_CHANCE, PIXEL_SIDE, SAMPLE, measure
from tlkit.errors import DataError

SMALL_PER_CLASS = 1000  # median images per class below which the data is "small"
SIMILAR_GAIN = 0.0  # features minus pixels probe accuracy at or above which data is "similar"
FLIP_RETAINED = 0.5  # --no-flip when a pixel probe keeps less than this share of its skill on mirrored images
# (judged only when that probe beats chance by at least MIN_ABOVE_CHANCE, in tlkit.advise_measure)
TINY_SIDE = 32  # median shorter side (px) below which random-crop augmentation is off
MIN_INPUT = 64  # smallest suggested input side: EfficientNet/ResNet stride 32 leaves a 2x2 map
REFERENCE = "https://cs231n.github.io/transfer-learning/"

SITUATIONS: dict[str, dict[str, str]] = {
    "small-similar": {
        "title": "small data, similar to ImageNet",
        "strategy": "keep the pretrained network fixed and train a linear classifier on its penultimate "
        "features: with little data, finetuning overfits, and the top features already fit",
        "recipe": "recipes/features_linear.py",
    },
    "large-similar": {
        "title": "large data, similar to ImageNet",
        "strategy": "train a new head, then finetune the top blocks at a tenth of the learning rate: "
        "enough data not to overfit, and the lower layers already fit",
        "recipe": "recipes/finetune_top_blocks.py",
    },
    "small-different": {
        "title": "small data, different from ImageNet",
        "strategy": "finetune deeper, from earlier layers (all blocks), for few epochs: the top features "
        "do not describe this data, so they must be relearned, and few epochs limit overfitting",
        "recipe": "recipes/finetune_deep.py",
    },
    "large-different": {
        "title": "large data, different from ImageNet",
        "strategy": "finetune the whole network from the pretrained weights: enough data to move every "
        "layer, and a pretrained start still converges faster than random",
        "recipe": "recipes/finetune_deep.py",
    },
}


@dataclass
class Advice:
    """The measurements, the situation they put the data in, and what to run."""

    data: str
    base: str
    situation: str  # a key of SITUATIONS
    size: str  # "small" | "large"
    similarity: str  # "similar" | "different"
    reasons: list[str]
    recipe: str
    command: str  # one shell line (steps joined with &&)
    commands: list[str]  # the same steps, one per entry
    measurements: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # label smoothing, mixup, cutmix, RandAugment, EMA: tlkit.advise_recipes.recommend's entries
    regularisation: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "title": SITUATIONS[self.situation]["title"],
            "strategy": SITUATIONS[self.situation]["strategy"],
            "reference": REFERENCE,
        }

    def to_text(self) -> str:
        s = SITUATIONS[self.situation]
        lines = [f"situation: {s['title']} ({self.situation})", f"strategy: {s['strategy']}", "", "why:"]
        lines += [f"  - {r}" for r in self.reasons]
        if self.regularisation:
            lines += ["", "regularisation (measured by benchmarks/bench_recipes.py):"]
            lines += [f"  {'+' if r['recommend'] else '-'} {r['reason']}" for r in self.regularisation]
        lines += [
            "",
            f"recipe: {self.recipe} (see recipes/README.md)",
            "command:",
            f"  {self.command}",
            "",
            f"measured on {self.measurements['sample']['images']} images with {self.base} "
            f"in {self.seconds:.1f} s; situations after {REFERENCE}",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- deciding


def input_side(median_short_side: float, native: int) -> int:
    """The suggested square input side: the images' own size rounded up to a multiple of 32,
    at least :data:`MIN_INPUT`, at most the base's native side."""
    return int(min(native, max(MIN_INPUT, 32 * math.ceil(median_short_side / 32))))


def _slug(text: str) -> str:
    tail = text.rstrip("/").replace(":", "-").split("/")[-1] or "data"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)


def decide(m: dict[str, Any]) -> Advice:
    """Turn :func:`measure`'s numbers into an :class:`Advice` (pure: no I/O)."""
    per = m["per_class"]
    size = "small" if per["median"] < SMALL_PER_CLASS else "large"
    gain = m["probe"]["gain"]
    similarity = "similar" if gain >= SIMILAR_GAIN else "different"
    situation = f"{size}-{similarity}"
    sz = m["image_size"]
    short = min(sz["median_height"], sz["median_width"])
    side = input_side(short, min(m["base_input"]))
    no_augment = short < TINY_SIDE
    retained = m["mirror"]["retained"]
    no_flip = retained is not None and retained < FLIP_RETAINED
    base, data = m["base"], m["data"]

    reasons = [
        f"{size} data: {m['images']:,} images in {m['classes']} classes, median {per['median']:g} per class "
        f"(min {per['min']}, max {per['max']}); small means a median under {SMALL_PER_CLASS:,} per class, "
        f"fewer than the ~1,300 per class the base learned ImageNet from",
        f"{similarity} {'to' if similarity == 'similar' else 'from'} ImageNet: a linear probe on {base}'s "
        f"penultimate features "
        f"({m['probe']['layer']}, {m['probe']['features_dim']} values) scores {m['probe']['features']:.3f}, on raw "
        f"{PIXEL_SIDE}x{PIXEL_SIDE} pixels {m['probe']['pixels']:.3f}: the ImageNet features are "
        + (f"{abs(gain):.3f} {'better' if gain > 0 else 'worse'} than" if round(gain, 3) else "as good as")
        + f" pixels (similar when they are at least as good, gain >= {SIMILAR_GAIN:g})",
        "the pretrained ImageNet classifier's mean top-1 probability is "
        f"{m['imagenet']['mean_top1_prob']:.3f}; its most frequent answers: "
        + ", ".join(f"{c['name']} {c['fraction']:.0%}" for c in m["imagenet"]["frequent_classes"])
        + " (reported, not decisive: a low value means no ImageNet class fits, not that the features are useless)",
        f"images are {sz['median_height']:g}x{sz['median_width']:g} (median): input {side}x{side}"
        + (
            ", the base's own size"
            if side == min(m["base_input"])
            else f" instead of the base's {m['base_input'][0]}x{m['base_input'][1]} (upsampling adds no detail and "
            f"costs {(min(m['base_input']) / side) ** 2:.0f}x the compute)"
        ),
    ]
    multi = bool(m.get("multi_label"))
    # augmentation and flips matter only when training on images (multi-label data always finetunes)
    finetunes = situation != "small-similar" or multi
    if finetunes and no_augment:
        reasons.append(
            f"images are tiny (shorter side {short:g} < {TINY_SIDE} px): no random-crop augmentation "
            "(--no-augment), which would keep only a few pixels of each image"
        )
    if finetunes and retained is not None:
        mi = m["mirror"]
        reasons.append(
            f"mirroring {'changes' if no_flip else 'keeps'} the class: a pixel probe scores {mi['pixels']:.3f} "
            f"on the images and {mi['pixels_on_mirrored']:.3f} on their mirror images (chance {mi['chance']:.3f}), "
            f"keeping {retained:.0%} of its above-chance accuracy"
            + (f" (< {FLIP_RETAINED:.0%}): --no-flip" if no_flip else f" (>= {FLIP_RETAINED:.0%}): flips stay on")
        )
    elif finetunes:
        reasons.append(
            "mirroring: the pixel probe is too close to chance to tell whether mirroring changes the "
            "class; flips stay on (tlkit's default)"
        )

    regularisation: list[dict[str, Any]] = []
    if multi:
        reasons[:1] = advise_recipes.multi_label_reasons(m)
        reasons[0] += f": {size} data (small means a median under {SMALL_PER_CLASS:,} positives per label)"
    if finetunes:
        # both stages' epochs: 5 + 5 (defaults), 4 + 4 (the deep recipe), 5 (--unfreeze 0 skips stage 2)
        epochs = {"large-similar": 10, "small-similar": 5}.get(situation, 8)
        regularisation = advise_recipes.recommend(
            multi_label=multi,
            per_class_median=per["median"],
            train_images=int(m["images"] * 0.8),  # finetune's default --val-split 0.2
            batch_size=32,
            run_epochs=epochs,
        )
    q = shlex.quote
    sized = f"--input-size {side} {side}"
    extra = (" --no-augment" if no_augment else "") + (" --no-flip" if no_flip else "")
    extra += advise_recipes.extra_flags(regularisation)
    if multi and situation == "small-similar":
        # tlkit probe fits one label per image; a frozen base with a sigmoid head is the same linear classifier.
        reasons.append(
            "multi-label: instead of extract + probe (one label per image), finetune the head alone on the "
            "frozen base (--unfreeze 0), the same linear classifier on the penultimate features, with a "
            "threshold per label"
        )
        commands = [f"tlkit finetune --base {base} --data {q(data)} {sized} --unfreeze 0{extra}"]
    elif situation == "small-similar":
        name = f"{base}-{_slug(data)}"
        commands = [
            f"tlkit extract --base {base} --layer penultimate --data {q(data)} {sized} --out features/{name}.parquet",
            f"tlkit probe features/{name}.parquet --out probes/{name}",
        ]
    elif situation == "large-similar":
        commands = [f"tlkit finetune --base {base} --data {q(data)} {sized} --unfreeze 2{extra}"]
    else:
        # tlkit's tested main job (digits: 0.96): 4 + 4 epochs, every block unfrozen, lr 3e-3.
        commands = [
            f"tlkit finetune --base {base} --data {q(data)} {sized} --epochs 4 --finetune-epochs 4 "
            f"--unfreeze all --lr 3e-3{extra}"
        ]
    thresholds = {
        "small_per_class": SMALL_PER_CLASS,
        "similar_gain": SIMILAR_GAIN,
        "flip_retained": FLIP_RETAINED,
        "min_above_chance": MIN_ABOVE_CHANCE,
        "tiny_side": TINY_SIDE,
        "pixel_side": PIXEL_SIDE,
    }
    return Advice(
        data=data,
        base=base,
        situation=situation,
        size=size,
        similarity=similarity,
        reasons=reasons,
        recipe=SITUATIONS[situation]["recipe"],
        command=" && ".join(commands),
        commands=commands,
        measurements=m,
        thresholds=thresholds,
        regularisation=regularisation,
    )


def advise(
    data: str, *, base: str = "efficientnet_lite0", sample: int = SAMPLE, seed: int = 0, cache_dir: str | None = None
) -> Advice:
    """Measure ``data`` (see the module docstring) and recommend a situation, recipe and command."""
    t0 = time.time()
    if sample < 4:
        raise DataError(f"--sample must be at least 4, got {sample}")
    advice = decide(measure(data, base=base, sample=sample, seed=seed, cache_dir=cache_dir))
    advice.seconds = round(time.time() - t0, 1)
    return advice
