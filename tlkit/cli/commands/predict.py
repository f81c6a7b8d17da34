"""``tlkit predict``: top-K ImageNet classes of image files, with names and probabilities."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tlkit.cli.commands._argtypes import positive_int
from tlkit.data.images import MAX_PIXELS  # light: numpy only
from tlkit.errors import ConfigError

NAME = "predict"
HELP = "classify images with an ImageNet-pretrained base (top-K classes)"
DESCRIPTION = (
    "Top-K ImageNet classes for each image (JPEG, PNG, BMP, GIF, WebP, AVIF, and HEIC with "
    'pip install "tlkit[heic]"; grayscale and RGBA become RGB; a JPEG is turned upright by its '
    "EXIF orientation). Images are center-cropped to 87.5% of the shorter side and resized (bilinear, "
    "antialiased: the interpolation training and the exported model use) to the model's input, "
    "as in the published ImageNet evaluation; --resize plain resizes the whole image instead. "
    "The model takes the raw pixels and preprocesses inside (as its export does). "
    "Each file's header is checked before decoding (--max-pixels). "
    "Exit status: 0 when every image was answered; 2 when an image could not be read (missing, "
    "not an image, damaged, too large): each such file gets one line on stderr, and the other "
    "files are still answered on stdout; 1 only for a bug in tlkit."
)
ORDER = 50


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files; a run directory first (tlkit predict RUN_DIR IMAGE...) answers with that finetuned "
        "run: a multi-label run prints every label at or above its threshold (thresholds.json) with its score, "
        "'(none)' when none is; a single-label run its top classes",
    )
    p.add_argument("--base", default="efficientnet_lite0", help="registry name of the model")
    p.add_argument("--weights", default="imagenet", help="'imagenet' or a weights file with a 1000-class ImageNet head")
    p.add_argument("--top", type=positive_int, default=5, help="classes to show per image")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")
    p.add_argument(
        "--resize",
        choices=("crop", "plain"),
        default=None,
        help="crop: center crop 87.5%% then resize (the default for --base); plain: resize the whole image "
        "(the default for a run, as its validation images were)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=MAX_PIXELS,
        help="refuse an image whose header declares more pixels, before decoding it",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def prepare_image(rgb: Any, size: tuple[int, int], resize: str = "crop") -> Any:
    """An RGB uint8 array at ``size`` (H, W) for the model, float32 0..255 (:mod:`tlkit.data.resize`)."""
    from tlkit.data.resize import check_policy, resize_numpy

    return resize_numpy(rgb, size, check_policy(resize))


def predict_files(
    paths: list[str],
    *,
    base: str = "efficientnet_lite0",
    weights: str = "imagenet",
    top: int = 5,
    batch_size: int = 16,
    resize: str = "crop",
    max_pixels: int = MAX_PIXELS,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Classify image files; returns (results, errors), each in input order.

    A result is ``{"image", "predictions": [{"rank", "index", "synset", "name", "prob"}]}``;
    an error is ``{"image", "reason", "error"}`` (``reason``: :class:`tlkit.errors.ImageError`'s code).
    ``max_pixels`` bounds each image, read from its header before decoding.
    """
    import numpy as np

    import tlkit
    from tlkit.data.images import ImageError, load_rgb
    from tlkit.imagenet import decode_predictions
    from tlkit.registry import get_spec

    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    spec = get_spec(base)
    if spec.num_classes != 1000 or (weights == "imagenet" and not spec.has_imagenet):
        raise ConfigError(
            f"{spec.name} has no ImageNet classifier to predict with; bases that do: "
            + ", ".join(s.name for s in tlkit.list_models() if s.has_imagenet)
        )

    size = spec.input_shape[:2]
    ready: list[tuple[str, Any]] = []
    errors: list[dict[str, str]] = []
    for path in paths:
        try:
            ready.append((path, prepare_image(load_rgb(path, max_pixels=max_pixels), size, resize)))
        except ImageError as exc:
            errors.append({"image": path, "reason": exc.reason, "error": str(exc)})
    if not ready:
        return [], errors

    model = tlkit.build(spec.name, weights=weights, include_preprocessing=True)
    results: list[dict[str, Any]] = []
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        x = np.stack([a for _, a in chunk])
        probs = np.asarray(model.predict_on_batch(x), dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != 1000:
            raise ConfigError(
                f"{spec.name} with weights {weights!r} gives outputs of shape {probs.shape}, not 1000 ImageNet scores"
            )
        for (path, _), row in zip(chunk, probs):
            preds = decode_predictions(row, top=top)
            results.append(
                {
                    "image": path,
                    "predictions": [
                        {"rank": r + 1, "index": p.index, "synset": p.synset, "name": p.name, "prob": p.prob}
                        for r, p in enumerate(preds)
                    ],
                }
            )
    return results, errors


def _print_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    if rows:
        widths = [max(len(h), *(len(t[i]) for t in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        for t in rows:
            print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())


def _run_mode(args: argparse.Namespace) -> int:
    """``tlkit predict RUN_DIR IMAGE...`` (:mod:`tlkit.finetune.run_predict`)."""
    from tlkit.finetune.run_predict import predict_run_files, table_rows

    if len(args.images) < 2:
        raise ConfigError(f"{args.images[0]} is a run directory: pass image files after it")
    facts, results, errors = predict_run_files(
        args.images[0],
        args.images[1:],
        top=args.top,
        batch_size=args.batch_size,
        resize=args.resize or "plain",
        max_pixels=args.max_pixels,
    )
    for e in errors:
        print(f"tlkit predict: error: {' '.join(e['error'].split())}", file=sys.stderr)
    if args.json:
        print(json.dumps({**facts, "results": results, "errors": errors}, indent=2))
    else:
        _print_table(*table_rows(facts, results))
    return 2 if errors else 0


def run(args: argparse.Namespace) -> int:
    from tlkit.finetune.run_predict import is_run_dir

    if is_run_dir(args.images[0]):
        return _run_mode(args)
    results, errors = predict_files(
        args.images,
        base=args.base,
        weights=args.weights,
        top=args.top,
        batch_size=args.batch_size,
        resize=args.resize or "crop",
        max_pixels=args.max_pixels,
    )
    for e in errors:  # the CLI's one-line error format, one line per unreadable file
        print(f"tlkit predict: error: {' '.join(e['error'].split())}", file=sys.stderr)
    if args.json:
        print(json.dumps({"base": args.base, "weights": args.weights, "results": results, "errors": errors}, indent=2))
    else:
        header = ("image", "rank", "class", "name", "prob")
        rows = [
            (r["image"], str(p["rank"]), str(p["index"]), p["name"], f"{p['prob']:.4f}")
            for r in results
            for p in r["predictions"]
        ]
        _print_table(header, rows)
    # An unreadable image is the user's input error (2), whether or not others were answered;
    # 1 stays reserved for bugs (see tlkit.cli.main.main).
    return 2 if errors else 0
