"""``tlkit segment``: semantic segmentation (FCN-32s/16s/8s or a U-Net decoder on a registered base).

Subcommands: ``sample-data`` (a generated data set), ``finetune``, ``evaluate``, ``predict``, ``export``.
Nothing heavy at import: ``tlkit segment --help`` loads no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys

from tlkit.cli.commands._argtypes import positive_int

NAME = "segment"
HELP = "semantic segmentation: finetune an FCN or U-Net decoder on image/mask pairs, evaluate, predict, export"
DESCRIPTION = (
    "Per-pixel classification on any registered base whose body converts to a fully convolutional "
    "network. Data: images with masks (palette or index PNGs; class 0 = background, 255 = ignored). "
    "Runs are run directories as tlkit finetune's (staged training, --resume, --force)."
)
ORDER = 45


def _sample_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="DIR", help="folder to write: DIR/{train,val,test}/{images,masks} and classes.txt")
    p.add_argument("--train", type=positive_int, default=120, help="training pairs")
    p.add_argument("--val", type=positive_int, default=30, help="validation pairs")
    p.add_argument("--test", type=int, default=30, help="test pairs (0: no test split)")
    p.add_argument("--size", type=positive_int, default=128, help="side of the square photos, in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed: the same arguments write the same bytes")


def _finetune_args(p: argparse.ArgumentParser) -> None:
    from tlkit.cli.commands.finetune import add_config_flags
    from tlkit.segment.config import cli_fields

    add_config_flags(p, cli_fields())
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last checkpoint (same --data; the other settings come "
        "from the run's config.json); gives the uninterrupted run's history bit for bit on CPU",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing run (the old one is deleted once the new one has its first checkpoint)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress (errors and warnings still go to stderr)")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run directory made by tlkit segment finetune")
    p.add_argument("--split", choices=("train", "val", "test"), default="val", help="which pairs of the run's data")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object instead")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run directory made by tlkit segment finetune")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos to segment")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for STEM_mask.png and STEM_overlay.png")
    p.add_argument("--json", action="store_true", help="print one JSON list (files, size, class shares per image)")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run directory made by tlkit segment finetune")
    p.add_argument("out", nargs="?", metavar="OUT", help="model directory holding the versions", default=None)
    p.add_argument("--version", type=positive_int, help="version number; the highest existing + 1 when omitted")
    p.add_argument(
        "--format",
        action="append",
        choices=("saved_model", "tflite", "onnx"),
        dest="formats",
        help="saved_model only: tflite and onnx are refused for segmentation runs",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


SUBCOMMANDS = {
    "sample-data": (
        "write a generated segmentation data set (objects cut from scikit-image's photos, pasted on others)",
        _sample_data_args,
    ),
    "finetune": (
        "train a segmenter: stage 1 the decoder on the frozen base, stage 2 the base's top blocks too; "
        "writes runs/NAME/ (config.json, labels.json, history.csv with val_mean_iou, best.keras by val mean "
        "IoU, last.keras, state.json, train.log, metrics.json, confusion.png, examples.png)",
        _finetune_args,
    ),
    "evaluate": (
        "print a run's pixel accuracy, mean IoU, boundary IoU (3 px band) and per-class IoU on a split",
        _evaluate_args,
    ),
    "predict": ("write a palette mask PNG and an overlay PNG with a legend per photo", _predict_args),
    "export": (
        "a SavedModel: image bytes in, mask uint8 [B, H, W] at the image's size and scores float32 "
        "[B, H, W, C] out; verified after saving",
        _export_args,
    ),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tlkit.cli.main import _HelpFormatter

    sub = p.add_subparsers(dest="segment_command", metavar="SUBCOMMAND", required=True)
    for name, (text, adder) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)
        adder(sp)


def _say(args: argparse.Namespace):
    return (lambda m: None) if getattr(args, "quiet", False) else (lambda m: print(m, file=sys.stderr, flush=True))


def _sample_data(args: argparse.Namespace) -> int:
    from tlkit.segment.synthetic import make_dataset_folder

    path = make_dataset_folder(args.out, train=args.train, val=args.val, test=args.test, size=args.size, seed=args.seed)
    print(f"wrote {args.train} training, {args.val} validation and {args.test} test pairs to {path}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from tlkit.cli.commands.finetune import config_values
    from tlkit.segment.config import SegmentConfig, cli_fields
    from tlkit.segment.train import finetune_segmenter

    given = config_values(args, cli_fields())
    # A resume checks what was given against the run's own settings; the rest come from config.json.
    must_match = ("data", *(k for k in ("base", "head", "output_stride") if k in given))
    metrics = finetune_segmenter(
        SegmentConfig(**given), resume=args.resume, force=args.force, quiet=args.quiet, must_match=must_match
    )
    return 0 if metrics else 1


def _evaluate(args: argparse.Namespace) -> int:
    from tlkit.segment.evaluate import evaluate_run, report_text

    result = evaluate_run(args.run_dir, args.split)
    print(json.dumps(result, indent=2) if args.json else report_text(result))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tlkit.segment.predict import predict_images

    results = predict_images(args.run_dir, args.images, args.out, say=None if args.json else print)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from tlkit.segment.export import FORMATS_REFUSED, export_segment_run

    if set(args.formats or ()) - {"saved_model"}:
        from tlkit.errors import ConfigError

        raise ConfigError(FORMATS_REFUSED)
    path = export_segment_run(args.run_dir, args.out, version=args.version, progress=_say(args))
    print(path)
    return 0


RUNNERS = {
    "sample-data": _sample_data,
    "finetune": _finetune,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
}


def run(args: argparse.Namespace) -> int:
    return RUNNERS[args.segment_command](args)
