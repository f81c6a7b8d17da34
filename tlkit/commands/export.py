"""``tlkit export``: a TensorFlow Serving SavedModel that takes image bytes and returns labels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tlkit.commands._argtypes import positive_int

NAME = "export"
HELP = "export a run or a pretrained base as a SavedModel for TensorFlow Serving"
DESCRIPTION = (
    "Writes OUT/N/ (N: --version, or the next free integer), the layout TensorFlow Serving "
    "watches. Signature serving_default takes encoded images (JPEG/PNG/BMP/GIF bytes) and "
    "returns scores, top_k_ids, top_k_labels, top_k_scores; predict_pixels takes float32 "
    "RGB pixels 0..255 at the model's input size. Decoding, resizing and normalisation are "
    "in the graph; class names are the asset labels.txt; OUT/N/tlkit.json is the model card. "
    "The export is verified in a fresh process before it appears; an existing version is "
    "never overwritten. --check PATH verifies any existing export.")
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="run directory made by `tlkit finetune`")
    p.add_argument("--base", help="export this registry model's pretrained ImageNet classifier instead")
    p.add_argument("--weights", default="imagenet", help="with --base: 'imagenet' or a weights file")
    p.add_argument("--out", help="model directory holding the versions; saved_models/NAME when omitted")
    p.add_argument("--version", type=positive_int, help="version number; the highest existing + 1 when omitted")
    p.add_argument("--top-k", type=positive_int, default=5, help="K of the top_k_* outputs, fixed in the graph")
    p.add_argument("--resize", choices=("crop", "plain", "dataset"),
                   help="in-graph resize. crop: centre 87.5%% then bicubic, as `tlkit predict` (the default "
                        "for --base); plain: the whole image, bicubic; dataset: the whole image, bilinear, as "
                        "`tlkit finetune`/`evaluate` feed validation images (the default for RUN_DIR)")
    p.add_argument("--format", action="append", choices=("saved_model", "tflite"), dest="formats",
                   help="tflite adds N/tflite/ (float32 and dynamic-range int8 models, labels.txt) beside "
                        "the SavedModel, which is always written; repeatable")
    p.add_argument("--check", metavar="PATH",
                   help="verify an existing export (a version directory, or the latest version in a model "
                        "directory) and exit")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _fail(msg: str) -> Any:
    from tlkit.cli import CLIError

    return CLIError(msg)


def run(args: argparse.Namespace) -> int:
    sources = [bool(args.run_dir), bool(args.base), bool(args.check)]
    if sum(sources) != 1:
        raise _fail("give exactly one of RUN_DIR, --base NAME or --check PATH")
    from tlkit import export

    if args.check:
        try:
            report = export.check_export(args.check)
        except export.VerificationError as exc:
            print(f"tlkit export: FAILED: {exc}")
            return 1
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_report(report)
        return 0

    kwargs = {"out": args.out, "version": args.version, "top_k": args.top_k, "resize": args.resize,
              "formats": tuple(args.formats or ("saved_model",))}
    try:
        if args.base:
            result = export.export_base(args.base, weights=args.weights, **kwargs)
        else:
            result = export.export_run(args.run_dir, **kwargs)
    except export.VerificationError as exc:
        print(f"tlkit export: {exc}\nnothing was written.")
        return 1
    except export.ExportError as exc:
        raise _fail(str(exc)) from None
    if args.json:
        print(json.dumps({"path": str(result.path), "version": result.version,
                          "verification": result.verification}, indent=2))
        return 0
    card = result.card
    print(f"exported {card.get('base') or 'model'} ({card['num_classes']} classes, "
          f"{card['input_size'][0]}x{card['input_size'][1]}) to {result.path}")
    if result.verification:
        _print_report(result.verification)
    tfl = card.get("tflite")
    if tfl:
        sizes = ", ".join(f"{v} {m['bytes'] / 1e6:.1f} MB" for v, m in tfl["models"].items())
        check = tfl.get("verification")
        print(f"  tflite: {sizes} in {result.path / 'tflite'}" + (
            "; max abs diff vs Keras " + ", ".join(f"{v} {check[v]['max_abs_diff_vs_keras']:.2g}"
                                                    for v in tfl["models"]) if check else ""))
    return 0


def _print_report(report: dict[str, Any]) -> None:
    keras_diff = report.get("max_abs_diff_vs_keras")
    print(f"verified {report['path']} in a fresh process: {report['probes']} probe images, "
          f"serving_default vs predict_pixels max abs diff {report['max_abs_diff_bytes_vs_pixels']:.2g}"
          + (f", vs Keras {keras_diff:.2g}" if keras_diff is not None else "")
          + f" (tolerance {report['tolerance']:g})")
    if report.get("top1"):
        t = report["top1"][0]
        print(f"  probe 0 (photo): {t['label']} ({t['score']:.3f})")
    print(f"  corrupt request refused: {report.get('bad_request_error')}; next request served")
