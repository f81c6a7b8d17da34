"""The README's segmentation picture: test images | truth | each run's prediction, side by side.

Run after ``bench_segment.py --work DIR`` (which keeps its runs there)::

    python benchmarks/segment_picture.py DIR/runs/fcn32s-imagenet-s0 DIR/runs/fcn8s-imagenet-s0 \
        --names FCN-32s FCN-8s --out docs/images/segment.png

Every run is scored on the same first ``--rows`` test pairs of its own data (the runs must share it), at the
run's input size, by :func:`tlkit.segment.evaluate.score_split`; the picture is
:func:`tlkit.segment.pictures.examples_png` with one prediction column per run, saved as a palette PNG so
that it stays small.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="segmentation run directories (same data and input size)")
    ap.add_argument("--names", nargs="+", required=True, help="a column title per run")
    ap.add_argument("--rows", type=int, default=3, help="test images to show")
    ap.add_argument("--out", required=True, help="the PNG to write")
    args = ap.parse_args(argv)
    if len(args.names) != len(args.runs):
        ap.error("give one --names entry per run")

    from PIL import Image

    from tlkit.segment.evaluate import load_segment_run, score_split
    from tlkit.segment.pictures import examples_png
    from tlkit.segment.sources import find_pairs

    rows, classes, figures = None, None, []
    for run_dir in args.runs:
        run, config, classes = load_segment_run(run_dir)
        pairs = find_pairs(config["data"], val_split=config.get("val_split", 0.2), seed=config.get("seed", 0)).test
        model = run.load_checkpoint(run.require_checkpoint())
        size = tuple(config["input_size"])
        scores, shown = score_split(model, pairs[: args.rows], classes, size, args.rows, keep=args.rows)
        figures.append(f"{Path(run_dir).name}: mean IoU {scores['mean_iou']:.3f} on these {args.rows} images")
        rows = shown if rows is None else [(*old, new[2]) for old, new in zip(rows, shown, strict=True)]
    title = "test images never trained on: " + "; ".join(figures)
    buffer = io.BytesIO()
    tmp = Path(args.out).with_suffix(".tmp.png")
    examples_png(rows, classes, tmp, names=tuple(args.names), title="")
    with Image.open(tmp) as im:
        text = im.info.get("Title", "")
        small = im.convert("RGB").quantize(colors=128)
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Title", title + "\n" + text)
        small.save(buffer, format="PNG", optimize=True, pnginfo=info)
    os.remove(tmp)
    Path(args.out).write_bytes(buffer.getvalue())
    print(f"{args.out}: {len(buffer.getvalue()):,} bytes; {title}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
