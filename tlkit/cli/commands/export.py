"""``tlkit export``: a TensorFlow Serving SavedModel that takes image bytes and returns labels."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tlkit.cli.commands._argtypes import positive_int
from tlkit.data.images import MAX_PIXELS  # light: numpy only

NAME = "export"
HELP = "export a run or a pretrained base as a SavedModel for TensorFlow Serving"
DESCRIPTION = (
    "Writes OUT/N/ (N: --version, or the next free integer), the layout TensorFlow Serving "
    "watches. Signature serving_default takes encoded images (JPEG/PNG/WebP/BMP/GIF bytes; a JPEG "
    "is turned upright by its EXIF orientation; HEIC is refused: convert it on the client) and "
    "returns scores, top_k_ids, top_k_labels, top_k_scores (a multi-label run adds above_threshold, "
    "bool [B, C]: score >= the class's threshold from the run's thresholds.json, and "
    "labels_above_threshold, string [B, C]: the class name there, '' elsewhere; --format tflite/onnx "
    "are refused for it); predict_pixels takes float32 "
    "RGB pixels 0..255 at the model's input size. Decoding, resizing and normalisation are "
    "in the graph; class names are the asset labels.txt; OUT/N/tlkit.json is the model card. "
    "Every image's header is checked in the graph before decoding: more than --max-pixels pixels, "
    "bytes of no supported format, an empty request or undecodable data are refused with a "
    "'tlkit serving: image_bytes[i] ...' message. "
    "The export is verified in a fresh process before it appears; an existing version is "
    "never overwritten. OUT is locked while export runs: a second export into it is refused at "
    "once, and the version number is picked under the lock. A write that finds no room (a full "
    "disk, ulimit -f) is one line and leaves no version. "
    "Progress goes to stderr (--quiet: none). --check PATH verifies any existing export."
)
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="run directory made by `tlkit finetune`")
    p.add_argument("--base", help="export this registry model's pretrained ImageNet classifier instead")
    p.add_argument("--weights", default="imagenet", help="with --base: 'imagenet' or a weights file")
    p.add_argument(
        "--out",
        help="model directory holding the versions; saved_models/NAME when omitted; gs://BUCKET/PATH or "
        "s3://BUCKET/PATH: the version is built and verified locally, then uploaded with saved_model.pb last "
        "(its number: the highest on the store + 1)",
    )
    p.add_argument("--version", type=positive_int, help="version number; the highest existing + 1 when omitted")
    p.add_argument("--top-k", type=positive_int, default=5, help="K of the top_k_* outputs, fixed in the graph")
    p.add_argument(
        "--resize",
        choices=("crop", "plain"),
        help="in-graph resize (antialiased bilinear, as every tlkit command). crop: centre 87.5%%, "
        "as `tlkit predict` (the default for --base); plain: the whole image, as "
        "`tlkit finetune`/`evaluate` feed validation images (the default for RUN_DIR)",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=("saved_model", "tflite", "onnx"),
        dest="formats",
        help="tflite adds N/tflite/ beside the SavedModel (which is always written): model_float32, "
        "model_float16, model_dynamic_int8 (int8 weights, float activations) and model_int8 (full integer: "
        "uint8 pixels in, uint8 scores out; calibrated on up to 200 of the run's training images) .tflite files "
        "and labels.txt; each file's top-1 on the run's validation images (up to 1000, fewer for inputs over "
        "224x224) goes into the model card and is printed; onnx adds N/onnx/model.onnx (float32 RGB pixels 0..255 "
        'in, scores and top-k out; labels.txt), checked in ONNX Runtime (pip install "tlkit[deploy]"); '
        "with the deploy extra the .tflite files embed labels and input metadata, so MediaPipe's ImageClassifier "
        "runs them as they are; repeatable",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=_points,
        default=2.0,
        metavar="POINTS",
        help="with --format tflite: warn (one line on stderr) when a quantised file's top-1 is more than this "
        "many percentage points below model_float32.tflite's; for --base (no labels): when its top class "
        "differs from the float model's on more than this percentage of the check images",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="with --format tflite: refuse the export (exit 1, nothing written) instead of warning",
    )
    p.add_argument(
        "--calibration-data",
        metavar="DIR",
        help="with --format tflite: calibrate model_int8.tflite on up to 200 images of this folder "
        "(for --base: else on synthetic photo crops and the probe images; for RUN_DIR: instead of the run's "
        "training images)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=MAX_PIXELS,
        help="the serving graph refuses an image whose header declares more pixels (all frames of "
        "a GIF together), before decoding it; the same limit as `tlkit predict --max-pixels`",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--check",
        metavar="PATH",
        help="verify an existing export (a version directory, or the latest version in a model directory) and exit",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected percentage points >= 0, got {text!r}")
    return value


def _fail(msg: str) -> Any:
    from tlkit.cli.main import CLIError

    return CLIError(msg)


def _own_stderr() -> Any:
    """A private copy of stderr's file descriptor (or stderr itself where it has none, e.g. captured)."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return sys.stderr


class _Progress:
    """Progress lines on stderr, with a "still ..." line when a step runs longer than ``every`` s."""

    def __init__(self, enabled: bool, every: float = 5.0) -> None:
        self.enabled, self.every = enabled, every
        self.start = self.last = time.monotonic()
        self.step = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Our own copy of stderr, taken now: while TensorFlow starts, fd 2 is captured (tlkit._quiet_tf)
        # and a line written there would only show up if the start failed.
        self._out = _own_stderr() if enabled else None

    def __call__(self, step: str) -> None:
        with self._lock:
            self.step, self.last = step, time.monotonic()
        self._print(step)

    def _print(self, text: str) -> None:
        if self.enabled and self._out is not None:
            print(f"tlkit export [{time.monotonic() - self.start:5.1f} s]: {text}", file=self._out, flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                due = self.step and time.monotonic() - self.last >= self.every
                if due:
                    self.last = time.monotonic()
            if due:
                self._print(f"still {self.step[0].lower()}{self.step[1:]}")

    def __enter__(self) -> _Progress:  # noqa: PYI034  (typing.Self needs Python 3.11)
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, name="tlkit-export-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._out is not None and self._out is not sys.stderr:
            self._out.close()
        self._out = None


def _check_sources(args: argparse.Namespace) -> None:
    """Refusals about the inputs that need no TensorFlow (run directory, calibration folder): instant."""
    from tlkit.errors import NotFoundError

    if args.run_dir and not Path(args.run_dir).is_dir():
        raise NotFoundError(f"run directory {args.run_dir} does not exist (a folder made by `tlkit finetune`)")
    if args.run_dir and "://" not in args.run_dir:
        from tlkit.segment.export import refuse_segmentation_run

        refuse_segmentation_run(args.run_dir)  # its export (mask and scores out) is `tlkit segment export`
    if args.calibration_data and not Path(args.calibration_data).is_dir():
        raise NotFoundError(f"--calibration-data {args.calibration_data} is not a folder (give a folder of images)")


def _check_early(args: argparse.Namespace) -> Path:
    """Refusals that need no TensorFlow (target directory, version, run directory): instant.
    Returns the model directory."""
    from tlkit.export.versions import check_target, default_out

    _check_sources(args)
    out = Path(args.out) if args.out else default_out(base=args.base, run_dir=args.run_dir)
    return check_target(out, args.version)


def _run_remote(args: argparse.Namespace) -> int:
    """``--out gs://...`` / ``s3://...``: the version is built and verified in a local staging folder as
    always, then uploaded with saved_model.pb last (:mod:`tlkit.export.remote_out`). The lock object and
    the bucket check come first, before TensorFlow loads."""
    from tlkit.export.remote_out import staged_export

    _check_sources(args)
    url = args.out.rstrip("/")
    with staged_export(url, args.version) as (local, n):
        args.out, args.version, args.shown_out = str(local), n, url
        return _run(args)


def run(args: argparse.Namespace) -> int:
    from tlkit._lock import output_lock
    from tlkit.storage.remote import check_scheme, is_remote, local_path

    sources = [bool(args.run_dir), bool(args.base), bool(args.check)]
    if sum(sources) != 1:
        raise _fail("give exactly one of RUN_DIR, --base NAME or --check PATH")
    if args.check:
        if is_remote(args.check):
            raise _fail(f"--check reads a local export; download {args.check} and pass the local folder")
        return _run(args)
    from tlkit.storage.remote import is_remote

    if is_remote(args.run_dir or ""):
        from tlkit.finetune.store_runs import fetched_run

        with fetched_run(args.run_dir) as local:  # a run on gs:// or s3://: read from a downloaded copy
            args.run_url, args.run_dir = args.run_dir, local
            return run(args)
    if "onnx" in (args.formats or ()):
        from tlkit.export.onnx_export import require_onnx  # looks the packages up: no TensorFlow yet

        require_onnx()
    if args.out:
        check_scheme(args.out)
    if args.out and is_remote(args.out):
        return _run_remote(args)
    if args.out:
        args.out = local_path(args.out)  # file:///a/b is /a/b
    # The model directory's lock before TensorFlow loads: a second export into it is refused at once,
    # naming the holder; the version number is picked under this lock.
    with output_lock(_check_early(args), inside=True):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    with _Progress(not args.quiet) as progress:  # stderr: --json output on stdout stays clean
        progress("loading TensorFlow")
        from tlkit.export import savedmodel as export

        if args.check:
            progress(f"verifying {args.check} in a fresh Python process")
            try:
                report = export.check_export(args.check)
            except export.VerificationError as exc:
                print(f"tlkit export: FAILED: {exc}")
                return 1
            progress("done")
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_report(report)
            return 0

        kwargs = {
            "out": args.out,
            "version": args.version,
            "top_k": args.top_k,
            "resize": args.resize,
            "formats": tuple(args.formats or ("saved_model",)),
            "max_pixels": args.max_pixels,
            "progress": progress,
            "max_accuracy_drop": args.max_accuracy_drop,
            "strict": args.strict,
            "calibration_data": args.calibration_data,
        }
        try:
            if args.base:
                result = export.export_base(args.base, weights=args.weights, **kwargs)
            else:
                result = export.export_run(args.run_dir, run_url=getattr(args, "run_url", None), **kwargs)
        except export.VerificationError as exc:
            print(f"tlkit export: {exc}\nnothing was written.")
            return 1
    where = result.path
    if getattr(args, "shown_out", None):  # published to a store: name the URL, not the staging folder
        where = f"{args.shown_out}/{result.version}"
        if result.verification:
            result.verification["path"] = where
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(where),
                    "version": result.version,
                    "max_pixels": args.max_pixels,
                    "verification": result.verification,
                    "tflite": (result.card.get("tflite") or {}).get("verification"),
                    "onnx": (result.card.get("onnx") or {}).get("verification"),
                    "tflite_accuracy": (result.card.get("tflite") or {}).get("accuracy"),
                },
                indent=2,
            )
        )
        return 0
    card = result.card
    print(
        f"exported {card.get('base') or 'model'} ({card['num_classes']} classes, "
        f"{card['input_size'][0]}x{card['input_size'][1]}, images up to {card['max_pixels']:,} pixels) "
        f"to {where}"
    )
    if result.verification:
        _print_report(result.verification)
    tfl = card.get("tflite")
    if tfl:
        _print_tflite(tfl, where)
    if card.get("onnx"):
        _print_onnx(card["onnx"], where)
    return 0


def _print_onnx(entry: dict[str, Any], path: Path | str) -> None:
    print(f"  onnx: {entry['bytes'] / 1e6:.2f} MB, opset {entry['opset']}, in {path}/{entry['file']}")
    check = entry.get("verification")
    if check:
        top = check["top_k_vs_saved_model"]
        print(
            f"  onnx check in {check['runtime'].split(' (')[0]} on {check['images']} images: max abs diff vs Keras "
            f"{check['max_abs_diff_vs_keras']:.2g} (tolerance {check['tolerance']:g}); top-{top['k']} as the "
            f"SavedModel's on {top['photos'] - top['mismatches']} of {top['photos']} photos"
        )


def _print_tflite(tfl: dict[str, Any], path: Path | str) -> None:
    sizes = ", ".join(f"{v} {m['bytes'] / 1e6:.2f} MB" for v, m in tfl["models"].items())
    meta = tfl.get("metadata") or {}
    embedded = " (with image-classifier metadata: labels, RGB 0..255 input; MediaPipe runs them as they are)"
    print(f"  tflite: {sizes} in {path}/tflite" + (embedded if meta.get("embedded") else ""))
    if meta and not meta.get("embedded"):
        print(f"tlkit export: TFLite metadata skipped: {meta.get('reason')}", file=sys.stderr)
    check = tfl.get("verification")
    if not check:
        return
    sample = check.get("sample", {})
    kinds = ("validation", "calibration_data", "synthetic", "probes")
    parts = ", ".join(f"{sample[k]} {k}" for k in kinds if sample.get(k))
    f32 = check["float32"]
    agree = "; ".join(
        f"{v} {check[v]['top1_agreement']:.1%} ({check[v]['top1_disagreements']} of {check[v]['images']} differ)"
        for v in tfl["models"]
        if v != "float32"
    )
    print(
        f"  tflite check on {check['images']} images ({parts}): float32 max abs diff vs Keras "
        f"{f32['max_abs_diff_vs_keras']:.2g}; top-1 agreement with Keras: {agree}"
    )
    acc = tfl.get("accuracy")
    if acc:
        figures = ", ".join(f"{k} {100 * acc[k]:.1f}%" for k in ("keras", *tfl["models"]))
        print(f"  top-1 on {acc['images']} {acc['split']} images ({acc.get('source')}): {figures}")
    if tfl.get("accuracy_warning"):
        print(f"tlkit export: warning: {tfl['accuracy_warning']}", file=sys.stderr)


def _print_report(report: dict[str, Any]) -> None:
    keras_diff = report.get("max_abs_diff_vs_keras")
    print(
        f"verified {report['path']} in a fresh process: {report['probes']} probe images, "
        f"serving_default vs predict_pixels max abs diff {report['max_abs_diff_bytes_vs_pixels']:.2g}"
        + (f", vs Keras {keras_diff:.2g}" if keras_diff is not None else "")
        + f" (tolerance {report['tolerance']:g})"
    )
    if report.get("top1"):
        t = report["top1"][0]
        print(f"  probe 0 (photo): {t['label']} ({t['score']:.3f})")
    refused = report.get("refused") or {"garbage": report.get("bad_request_error")}
    for name, line in refused.items():
        print(f"  {name.replace('_', ' ')} request refused: {line}")
    print("  next request served")
