"""``tlkit dense-eval``: slide a classifier over a whole image at several scales in one pass each."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tlkit.cli.commands._argtypes import positive_float, positive_int
from tlkit.data.images import MAX_PIXELS  # light: numpy only
from tlkit.errors import ConfigError

# As tlkit.dense.geometry (not imported here: it imports TensorFlow, and `tlkit --help` must stay light).
MAX_SCALED_PIXELS = 2048 * 2048
MAX_ASPECT = 10.0

NAME = "dense-eval"
HELP = "dense (fully convolutional) evaluation of an image: class-score maps at several scales"
DESCRIPTION = (
    "Converts the classifier to a fully convolutional network (fully connected layers become "
    "convolutions) and evaluates the image at each scale in one forward pass, giving a map of "
    "class scores: one position per window of the training size, every STRIDE pixels. The image "
    "is resized (antialiased bilinear, as every tlkit command) so that its shorter side equals each "
    "scale (--resize square: to scale x scale). Scores are the per-position "
    "probabilities averaged (or max-ed) over positions, then averaged over scales. --stride 16 "
    "on a stride-32 net interleaves 4 passes shifted by 0/16 pixels. Only windows inside the "
    "image are scored. Bounds, checked from the file's header before anything is decoded or "
    "resized: --max-pixels for the file, --max-scaled-pixels and --max-aspect for the resized image."
)
ORDER = 55


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", help="registry name of an ImageNet model (see `tlkit models`)")
    src.add_argument("--run", metavar="RUN_DIR", help="a finetuning run directory (best.keras, labels.json)")
    p.add_argument("--image", required=True, help="the image file")
    p.add_argument(
        "--weights", default="imagenet", help="with --base: 'imagenet', a weights file, or 'none' (random, for testing)"
    )
    p.add_argument("--scales", default="224,384,512", help="comma-separated shorter-side sizes")
    p.add_argument(
        "--resize",
        choices=("shorter", "square"),
        default="shorter",
        help="shorter: shorter side to each scale, aspect kept; square: the whole image to "
        "scale x scale (at the model's input size: one window, the map is 1x1)",
    )
    p.add_argument(
        "--stride",
        type=positive_int,
        default=None,
        help="output step in pixels; a divisor of the net's stride (default: the net's)",
    )
    p.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="how scores are pooled over positions")
    p.add_argument("--top", type=positive_int, default=5, help="classes to show")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--heatmap",
        metavar="OUT.png",
        help="write the top class's score map at the largest scale over the image; its title gives the "
        "highest value on that map, and the edge strip no window covers is drawn grey as no data",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=MAX_PIXELS,
        help="refuse an image file whose header declares more pixels (as `tlkit predict`)",
    )
    p.add_argument(
        "--max-scaled-pixels",
        type=positive_int,
        default=MAX_SCALED_PIXELS,
        help="refuse a scale at which the resized image would have more pixels",
    )
    p.add_argument(
        "--max-aspect",
        type=_aspect,
        default=MAX_ASPECT,
        help="refuse an image whose longer side exceeds this many times its shorter side",
    )


def _aspect(text: str) -> float:
    import argparse

    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (longer side : shorter side), got {text!r}")
    return value


def parse_scales(text: str) -> list[int]:
    """``"224,384"`` -> ``[224, 384]``; every scale a positive integer."""
    try:
        scales = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--scales must be comma-separated integers, got {text!r}") from None
    if not scales or min(scales) < 1:
        raise ConfigError(f"--scales must be positive integers, got {text!r}")
    return scales


def dense_eval(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Run the evaluation the arguments ask for; returns (JSON-ready report, DenseResult)."""
    from tlkit.dense.evaluator import DenseEvaluator

    scales = parse_scales(args.scales)
    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    limits = {"max_pixels": args.max_pixels, "max_scaled_pixels": args.max_scaled_pixels, "max_aspect": args.max_aspect}
    resize = getattr(args, "resize", "shorter")
    _check_image_early(args.image, scales, limits, resize)
    if args.base:
        weights = None if str(args.weights).lower() == "none" else args.weights
        ev = DenseEvaluator.from_name(args.base, weights=weights, batch_size=args.batch_size, **limits)
        source = {"base": args.base, "weights": weights}
    else:
        from tlkit.finetune.store_runs import fetched_run

        with fetched_run(args.run) as local:  # a run on gs:// or s3:// is read from a downloaded copy
            ev = DenseEvaluator.from_run(local, batch_size=args.batch_size, **limits)
        source = {"run": args.run}
    # A line per scale on a terminal: large scales take seconds each on a CPU.
    progress = (
        (lambda line: print(f"tlkit dense-eval: {line}", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    )
    result = ev.evaluate(
        args.image,
        scales=scales,
        stride=args.stride,
        aggregate=args.aggregate,
        top=args.top,
        resize=resize,
        progress=progress,
    )[0]
    report = {**source, "net_stride": ev.net_stride, "window": list(ev.window), **result.to_dict()}
    if args.heatmap:
        import numpy as np

        from tlkit.data.images import load_rgb
        from tlkit.plots import score_map_overlay

        best = result.best_map()
        top = result.top[0]
        rgb = load_rgb(args.image, max_pixels=args.max_pixels)
        # The title gives the value on this map (the largest scale), not the score averaged over
        # scales; cells no window covers are drawn as no data, not as 0.
        grid = best.window_map(top.index, fill=np.nan)
        path = score_map_overlay(
            rgb,
            grid,
            args.heatmap,
            title=f"{top.name} at scale {best.scale} (stride {best.stride})",
            extent=best.grid_extent(rgb.shape[:2]),
        )
        report["heatmap"] = str(path)
        report["heatmap_map"] = {
            "class": top.name,
            "scale": best.scale,
            "max": round(float(np.nanmax(grid)), 6),
            "no_data_cells": int(np.isnan(grid).sum()),
        }
    return report, result


def _check_image_early(image: str, scales: list[int], limits: dict[str, Any], resize: str = "shorter") -> None:
    """The image's bounds from its header, before the model is built (seconds) or anything decoded."""
    import warnings

    from PIL import Image

    from tlkit.errors import ImageError

    try:
        with warnings.catch_warnings():
            # PIL warns above ~89 MP; the limits below decide, with a message naming the flags.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            from tlkit.data.images import open_regular

            # open_regular: a FIFO or device named like an image is refused, not waited on forever.
            with open_regular(image) as f, Image.open(f) as im:
                w, h = im.size
    except Exception:  # noqa: BLE001  (unreadable: load_rgb reports why, with the usual reason codes)
        from tlkit.data.images import load_rgb

        load_rgb(image, max_pixels=limits["max_pixels"])
        return
    if w * h > limits["max_pixels"]:
        raise ImageError(
            image, "too_large", f"{w}x{h} pixels > {limits['max_pixels']:,}; --max-pixels raises the limit"
        )
    from tlkit.dense.geometry import check_scales

    check_scales(
        image, h, w, scales, resize, max_scaled_pixels=limits["max_scaled_pixels"], max_aspect=limits["max_aspect"]
    )


def run(args: argparse.Namespace) -> int:
    report, _ = dense_eval(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    h, w = report["image_size"]
    print(
        f"image: {report['image']} ({h}x{w}); window {report['window'][0]}x{report['window'][1]}, "
        f"net stride {report['net_stride']}, scores: {report['aggregate']} over positions, mean over scales"
    )
    rows = [
        (
            str(s["scale"]),
            f"{s['input_size'][0]}x{s['input_size'][1]}",
            "x".join(str(v) for v in s["map_shape"]),
            str(s["stride"]),
            f"{s['image_stride'][0]:.1f}",
            str(s["passes"]),
        )
        for s in report["scales"]
    ]
    _table(("scale", "resized", "map", "stride", "stride (image px)", "passes"), rows)
    print()
    _table(
        ("rank", "class", "name", "score"),
        [(str(t["rank"]), str(t["index"]), t["name"], f"{t['score']:.4f}") for t in report["top"]],
    )
    if report.get("heatmap"):
        m = report["heatmap_map"]
        print(f"\nheatmap: {report['heatmap']} ({m['class']} at scale {m['scale']}: max {m['max']:.3f} on the map)")
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
