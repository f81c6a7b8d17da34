"""``tlkit advise``: measure a dataset and say which transfer-learning situation it is in, and what to run."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import positive_int

NAME = "advise"
HELP = "measure your data (size, image sizes, distance from ImageNet) and print the recipe and command to run"
DESCRIPTION = (
    "Counts images and classes, looks at image sizes, and measures on a sample how far the data is from "
    "ImageNet: a linear probe on the pretrained network's penultimate features against the same probe on "
    "raw pixels (and, for information, how confident the ImageNet classifier is). Prints the situation "
    "(small/large data x similar/different from ImageNet), the reasons with their numbers, the recipe in "
    "recipes/ and the exact tlkit command. Thresholds: small < 1000 images per class (median); similar "
    "when the features are at least as good as pixels. Label smoothing, mixup, cutmix, RandAugment and EMA "
    "are recommended only where benchmarks/bench_recipes.py measured a win beyond the seed spread, and "
    "never mixup/cutmix under 100 images per class or EMA on a run too short for its decay."
)
ORDER = 37


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="folder of class subfolders, a CSV manifest (path,label[,split]; or path,labels[,split] for "
        "multi-label data, labels separated by |), or builtin:digits / builtin:faces",
    )
    p.add_argument(
        "--base",
        default="efficientnet_lite0",
        help="registry name of a base with ImageNet weights (see `tlkit weights list`)",
    )
    p.add_argument("--sample", type=positive_int, default=200, help="images measured (stratified over classes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the probes' folds")
    p.add_argument("--cache-dir", help="where builtin datasets are written (default: $TLKIT_HOME or ~/.cache/tlkit)")
    p.add_argument("--json", action="store_true", help="print the measurements and advice as JSON")


def run(args: argparse.Namespace) -> int:
    from tlkit.advise import advise

    advice = advise(args.data, base=args.base, sample=args.sample, seed=args.seed, cache_dir=args.cache_dir)
    print(json.dumps(advice.to_dict(), indent=2) if args.json else advice.to_text())
    return 0
