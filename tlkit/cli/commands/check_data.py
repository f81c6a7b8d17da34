"""``tlkit check-data``: the preflight on its own: classes, sizes, bad files, duplicates, leakage."""

from __future__ import annotations

import argparse
import json
import sys

from tlkit.cli.commands._argtypes import fraction, positive_int

NAME = "check-data"
HELP = "check a dataset before training, decoding every file: class counts, sizes, bad files, duplicates, leakage"
DESCRIPTION = (
    "Decodes every image of a folder, CSV manifest, tfds:NAME or builtin dataset in full (thorough: "
    "tlkit finetune and tlkit extract check JPEGs from their headers and markers only and leave the "
    "decoding to the input pipeline, so each file is decoded once) and reports class "
    "counts per split, image sizes, bad files (skipped by training, listed with the reason), "
    "duplicate files and train/validation leakage. The counts are the ones tlkit finetune would use "
    "with the same --leaks policy (its data report is this report). Exit status: 0 usable, 1 with "
    "--strict and bad files or leakage, 2 unusable or leakage with --leaks fail (the message names the "
    "problem)."
)
ORDER = 35


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        help="folder of class subfolders, a CSV manifest (path,label[,split]; or path,labels[,split] for "
        "multi-label data, names separated by |), tfds:NAME, "
        "builtin:digits / builtin:faces, or a tlkit prepare folder (its shards' checksums are verified)",
    )
    p.add_argument(
        "--val-split",
        type=fraction,
        default=0.2,
        help="fraction of each class held out for validation when the data gives no split",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument(
        "--leaks",
        choices=["drop", "keep", "fail"],
        default="drop",
        help="what tlkit finetune --leaks does with validation/test files identical to training files: "
        "drop leaves them out (the default: copies of training images inflate validation "
        "accuracy), keep keeps them, fail stops (exit 2); the counts follow it",
    )
    p.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="decode only a seeded sample of N files (what finetune --check-sample N checks)",
    )
    p.add_argument(
        "--multi-label",
        action="store_true",
        help="multi-label data from folders: one folder per label; an image in several label folders (a hard "
        "link, a symlink or the same bytes) is one image with all those labels (a CSV with a 'labels' column "
        "is multi-label without this flag)",
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when there are bad files or leakage")
    p.add_argument("--tfds-data-dir", help="folder with prepared TFDS datasets (nothing is downloaded)")
    p.add_argument("--cache-dir", help="where builtin datasets are written (default: $TLKIT_HOME or ~/.cache/tlkit)")
    p.add_argument("--skipped-csv", metavar="PATH", help="also write the bad files (path, reason, ...) to this CSV")


def run(args: argparse.Namespace) -> int:
    from tlkit.data import pipeline as data
    from tlkit.data import preflight

    source = data.resolve(
        args.data,
        val_split=args.val_split,
        seed=args.seed,
        tfds_data_dir=args.tfds_data_dir,
        cache_dir=args.cache_dir,
        multi_label=args.multi_label,
    )
    report = preflight.check(source, progress=sys.stderr.isatty(), sample=args.sample, seed=args.seed, thorough=True)
    if args.skipped_csv:
        report.write_skipped_csv(args.skipped_csv)
    try:
        preflight.apply_leak_policy(report, args.leaks, context="tlkit finetune's run")
    finally:  # with --leaks fail: the report (which lists the leaks), then the one-line error
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    if args.strict and (report.bad_files or report.leaks):
        return 1
    return 0
