"""``tlkit prepare``: decode, check, turn upright and resize a dataset once, into sharded TFRecord files."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import fraction, positive_int

NAME = "prepare"
HELP = "decode, check, turn upright and resize images once, into sharded TFRecord files that --data reads"
DESCRIPTION = (
    "Checks every image as finetune's preflight does (bad files are skipped and listed), decodes it with "
    "the input pipeline's decoder (EXIF orientation applied), resizes it (--size S: shorter side S, aspect "
    "kept; --size H W: exactly H x W) and stores it as a JPEG (--quality) in SPLIT-NNNNN-of-NNNNN.tfrecord "
    "shards, with tlkit-prepared.json (classes, counts per split and class, size, shards with their SHA-256, "
    "the source's train/val/test assignment, the skipped files), written last. Then pass the folder as "
    "--data to finetune, evaluate, extract or check-data: the splits are the prepared ones. --out may be "
    "gs:// or s3://. An interrupted prepare leaves no manifest; an existing --out needs --force."
)
ORDER = 36


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="folder of class subfolders, a CSV manifest (path,label[,split]), or builtin:digits / builtin:faces",
    )
    p.add_argument("--out", required=True, help="folder to write (local, gs://bucket/path or s3://bucket/path)")
    p.add_argument(
        "--size",
        type=positive_int,
        nargs="+",
        required=True,
        metavar="N",
        help="one number: the shorter side in pixels (aspect kept); two: height width",
    )
    p.add_argument("--quality", type=positive_int, default=90, help="JPEG quality of the stored images (1-100)")
    shards = p.add_mutually_exclusive_group()
    shards.add_argument("--shard-size", type=positive_int, metavar="N", help="images per shard file (default 1000)")
    shards.add_argument(
        "--shards",
        type=positive_int,
        metavar="N",
        help="shard files per split (at least the number of workers that will read it)",
    )
    p.add_argument(
        "--val-split",
        type=fraction,
        default=0.2,
        help="fraction of each class held out for validation when the data gives no split (as finetune's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split and the shard order")
    p.add_argument(
        "--leaks",
        choices=["drop", "keep", "fail"],
        default="drop",
        help="validation/test files identical to training files: drop leaves them out of the records, "
        "keep keeps them, fail stops (exit 2)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--cache-dir", help="where builtin datasets are written (default: $TLKIT_HOME or ~/.cache/tlkit)")
    p.add_argument("--json", action="store_true", help="print the manifest (without its item list) as JSON")


def run(args: argparse.Namespace) -> int:
    from tlkit.data.prepare import prepare

    m = prepare(
        args.data,
        args.out,
        size=args.size,
        quality=args.quality,
        shard_size=args.shard_size,
        shards=args.shards,
        val_split=args.val_split,
        seed=args.seed,
        leaks=args.leaks,
        force=args.force,
        cache_dir=args.cache_dir,
    )
    if args.json:
        brief = {**m, "splits": {s: {k: v for k, v in e.items() if k != "items"} for s, e in m["splits"].items()}}
        print(json.dumps(brief, indent=2))
    else:
        per = ", ".join(f"{s} {e['images']}" for s, e in m["splits"].items())
        mb = sum(sh["bytes"] for e in m["splits"].values() for sh in e["shards"]) / 1e6
        print(
            f"prepared {args.out}: {m['images']} images ({per}) in {m['num_shards']} shard(s), {mb:.1f} MB, "
            f"{len(m['skipped'])} skipped, {m['seconds']:.1f} s"
        )
    return 0
