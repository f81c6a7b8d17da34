"""Export a classifier as a TensorFlow Serving SavedModel: image bytes in, labels out.

Layout (what TensorFlow Serving watches)::

    saved_models/NAME/N/            N = integer version, next free one by default
        saved_model.pb, variables/  the graph: decode -> resize -> model -> top-K
        assets/labels.txt           class names, one per line; the graph's lookup table reads it
        tlkit.json                  model card (base, classes, input size, preprocessing, limits, metrics, ...)

Signatures:

* ``serving_default``: ``image_bytes`` (tf.string [B]: JPEG/PNG/BMP/GIF bytes) ->
  ``scores`` float32 [B, C], ``top_k_ids`` int32 [B, K], ``top_k_labels`` string [B, K],
  ``top_k_scores`` float32 [B, K].
* ``predict_pixels``: ``pixels`` (float32 [B, H, W, 3], RGB 0..255 at the model's input size)
  -> the same four outputs.
* A multi-label run (:mod:`tlkit.finetune.multilabel`): ``scores`` are per-class sigmoids, and both
  signatures add ``above_threshold`` (bool [B, C]: score >= the class's threshold from the run's
  ``thresholds.json``) and ``labels_above_threshold`` (string [B, C]: the class name there, ``""``
  elsewhere); the card's ``multi_label`` holds the thresholds. TFLite and ONNX are refused for it.

Decoding, resizing and normalisation are in the graph (the Keras model carries its
:class:`tlkit.models.preprocessing.Preprocess` layer), so a client sends only the bytes it
has. Every image's header is read in the graph before anything is decoded, and a request
holding an image of more than ``max_pixels`` pixels (``tlkit export --max-pixels``; default
:data:`tlkit.data.images.MAX_PIXELS`, as ``tlkit predict``) is refused without allocating it;
so are an empty request, bytes of no supported format and data the decoder rejects. Each
refusal is an ``InvalidArgumentError`` carrying one ``tlkit serving: image_bytes[i] ...``
line (:mod:`tlkit.export.serving_decode`). JPEGs are decoded with libjpeg's accurate IDCT, as PIL
and tlkit's data pipeline do. Resizing (``resize``) is :mod:`tlkit.data.resize`, as in every
tlkit command (antialiased bilinear, unrounded): ``"crop"`` (default for ImageNet bases, as
``tlkit predict``) a centre crop of 87.5% of the shorter side; ``"plain"`` (default for runs:
how ``tlkit finetune``/``evaluate`` resize validation images) the whole image.

An export is written to ``NAME/.tmp-N-...`` beside the target, verified in a fresh
Python process that cannot import tlkit (:mod:`tlkit.export.verify`), and only then renamed
to ``NAME/N``: a failed or interrupted (Ctrl-C, SIGTERM) export never leaves a version
behind, and an existing version is never overwritten. A temporary directory left by a
killed export is ignored by the version numbering and removed by the next export into the
same directory once its process is gone (:mod:`tlkit.export.versions`).

``formats=("saved_model", "tflite")`` (``--format tflite``) adds ``N/tflite/``: float32, float16,
dynamic-range int8 and full-integer int8 models of ``predict_pixels`` with a copy of labels.txt
(:mod:`tlkit.export.quantize`; full-integer int8 calibrated on the run's training images), pixels in and
``scores`` out; with the ``deploy`` extra each embeds image-classifier metadata
(:mod:`tlkit.export.tflite_metadata`) so MediaPipe's ImageClassifier runs it as it is. All are
compared with the Keras model on a sample (the run's validation images, up to
:data:`TFLITE_VALIDATION_IMAGES`, plus synthetic crops of photos and the probes): float32 must
match; and each file's top-1 on the run's validation images goes into the card, with a warning
(``strict``: a refusal) when a quantised file loses more than a threshold (:mod:`tlkit.export.tflite`). ``"onnx"``
(``--format onnx``, the deploy extra) adds ``N/onnx/model.onnx`` checked in ONNX Runtime
(:mod:`tlkit.export.onnx_export`).

``progress`` (a callable taking one line) is told each step: building or loading the
model, writing, verifying, done.

This module runs an export (versions, verification, the card); the ``tf.Module`` with both
signatures is :mod:`tlkit.export.serving`, the TFLite models :mod:`tlkit.export.tflite`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tlkit
from tlkit._io import move_into_place, no_room
from tlkit._lock import output_lock
from tlkit.data.images import MAX_PIXELS
from tlkit.errors import ConfigError, ExportError
from tlkit.export.card import make_card  # noqa: F401  (make_card re-exported)
from tlkit.export.card import write_card as _write_card
from tlkit.export.onnx_export import export_onnx, require_onnx
from tlkit.export.probes import png_header_only, probe_images, synthetic_pixels  # noqa: F401  (re-exported)
from tlkit.export.serving import (  # noqa: F401  (re-exported)
    DEFAULT_TOP_K,
    OUTPUT_KEYS,
    SERVING_SIGNATURE,
    ServingModule,
    _output_spec,
    check_max_pixels,
    save_serving_model,
)
from tlkit.export.serving_decode import (  # noqa: F401  (re-exported)
    BAD_IMAGE_MESSAGE,
    BYTES_INPUT,
    RESIZE_MODES,
    decode_images,
    error_line,
)
from tlkit.export.tflite import (  # noqa: F401  (re-exported)
    TFLITE_VALIDATION_IMAGES,
    AccuracyDropError,
    TFLiteData,
    add_tflite,
    save_tflite,
    tflite_check_pixels,
    tflite_data,
    validation_pixels,
)
from tlkit.export.verify import (  # noqa: F401  (re-exported: the public surface of tlkit.export.savedmodel)
    LABELS_FILE,
    MODEL_CARD,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    TFLITE_DIR,
    TFLITE_VARIANTS,
    TOLERANCE,
    VERIFY_TIMEOUT_S,
    VerificationError,
    card_verification,
    check_export,
    read_card,
    resolve_export_dir,
    verify_export,
)
from tlkit.export.verify_tflite import _tflite_interpreter, verify_tflite  # noqa: F401  (re-exported)
from tlkit.export.versions import (  # noqa: F401  (re-exported)
    TMP_PREFIX,
    check_out_dir,
    check_target,
    clean_stale_temp_dirs,
    default_out,
    existing_versions,
    next_version,
    refuse_existing,
    resolve_version,
    tmp_name,
)

FORMATS = ("saved_model", "tflite", "onnx")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class ExportResult:
    """What :func:`export_model` wrote: the version directory, its number and model card."""

    path: Path
    version: int
    card: dict[str, Any]
    verification: dict[str, Any] | None = None
    model: Any = field(default=None, repr=False)  # the Keras model that was exported


# --- export ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so the cleanup below runs (a plain SIGTERM
    would end the process without it); the previous handler is restored. Only from the main
    thread, and only over Python's default handler (an application's own one is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def export_model(
    model: Any,
    labels: Sequence[str],
    out: str | Path,
    *,
    version: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    resize: str = "crop",
    input_size: Sequence[int] | None = None,
    card: dict[str, Any] | None = None,
    verify: bool = True,
    probes: Sequence[bytes] | None = None,
    tolerance: float = TOLERANCE,
    formats: Sequence[str] = ("saved_model",),
    max_pixels: int = MAX_PIXELS,
    validation: np.ndarray | None = None,
    validation_source: str | None = None,
    tflite: TFLiteData | None = None,
    progress: Progress | None = None,
    thresholds: Sequence[float] | None = None,
) -> ExportResult:
    """Export a Keras classifier taking raw 0..255 RGB pixels to ``out/N``; see the module docstring.

    ``card`` adds fields to the model card (base, preprocessing mode, metrics, source).
    With ``verify`` (the default) the export is reloaded in a fresh process and compared
    with ``model`` on ``probes`` (default: :func:`probe_images`); a mismatch raises
    :class:`VerificationError` and nothing is left behind. ``max_pixels`` is the serving
    graph's limit on an image's pixels, read from its header before decoding. ``formats``
    may add ``"tflite"``: ``N/tflite/`` then holds float32, float16, dynamic-range and
    full-integer int8 models and the same labels.txt (the SavedModel is always written: it is
    what TF Serving loads and the reference), and/or ``"onnx"``: ``N/onnx/model.onnx``
    (:mod:`tlkit.export.onnx_export`); ``tflite`` (:class:`TFLiteData`) holds their
    calibration and validation images and the accuracy threshold (``validation``, float32
    [N, H, W, 3] at the model's size, unlabelled, is the older way to join their check).
    """
    say = progress or _quiet
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown export format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}")
    if "onnx" in formats:
        require_onnx()  # before any work: the deploy extra's packages, looked up
    max_pixels = check_max_pixels(max_pixels)
    out = check_out_dir(Path(out).resolve())  # resolved: the verifying process runs in another directory
    # One export per model directory at a time, and the version is picked under the lock: a second
    # export into OUT is refused at once (``tlkit export`` takes this lock before loading TensorFlow).
    with output_lock(out, inside=True):
        out.mkdir(parents=True, exist_ok=True)
        for stale in clean_stale_temp_dirs(out):
            say(f"removed {stale.name}, left by an export that no longer runs")
        n = resolve_version(out, version)
        target = out / str(n)
        refuse_existing(target, out)
        with _sigterm_as_interrupt():
            tmp = Path(tempfile.mkdtemp(prefix=tmp_name(n), dir=out))
            try:
                say(f"writing the SavedModel (version {n})")
                facts = save_serving_model(
                    model, labels, tmp, top_k=top_k, resize=resize, input_size=input_size, max_pixels=max_pixels,
                    thresholds=thresholds,
                )  # fmt: skip
                model_card = make_card(labels, facts, card or {}, version=n)
                _write_card(tmp, model_card)
                report = None
                if verify:
                    say("verifying the SavedModel in a fresh Python process (plain TensorFlow, no tlkit)")
                    report = verify_export(tmp, model=model, probes=probes, tolerance=tolerance)
                    model_card["verification"] = card_verification(report)
                    _write_card(tmp, model_card)
                if "tflite" in formats:
                    data = tflite or TFLiteData(validation=validation, validation_source=validation_source)
                    size, k = tuple(facts["input_size"]), facts["top_k"]
                    model_card["tflite"] = add_tflite(
                        model, tmp, size=size, top_k=k, resize=resize, data=data, verify=verify, probes=probes,
                        tolerance=tolerance, say=say,
                    )  # fmt: skip
                    _write_card(tmp, model_card)
                if "onnx" in formats:  # tlkit.export.onnx_export: N/onnx/model.onnx, checked in ONNX Runtime
                    kw = {"probes": probes, "validation": validation, "validation_source": validation_source}
                    model_card["onnx"] = export_onnx(
                        model, tmp, size=tuple(facts["input_size"]), top_k=facts["top_k"], resize=resize,
                        verify=verify, tolerance=tolerance, say=say, **kw,
                    )  # fmt: skip
                    _write_card(tmp, model_card)
                # A writer that does not take the lock may have taken N meanwhile.
                refuse_existing(target, out, explicit=version is not None)
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a server may run as another user
                # Same directory, same file system: the rename is atomic, so a watcher (TF Serving)
                # sees either no version N or a complete, verified one.
                move_into_place(tmp, target)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                why = no_room(exc)
                if why:
                    raise ExportError(
                        f"cannot write the export to {out} ({why}: the disk is full or a file-size limit, "
                        f"`ulimit -f`, was reached); free space or raise the limit, or pass --out on a disk "
                        f"with room; no version was written"
                    ) from None
                raise
    if report is not None:
        report["path"] = str(target)
    say(f"done: {target}")
    return ExportResult(path=target, version=n, card=model_card, verification=report, model=model)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def export_base(name: str, out: str | Path | None = None, *, weights: str = "imagenet", **kwargs: Any) -> ExportResult:
    """Export a pretrained ImageNet classifier from the registry (``tlkit export --base``).

    The model gets the base's :class:`~tlkit.models.preprocessing.Preprocess` in front, so the
    export takes raw pixels; classes are the 1000 ImageNet names shipped with tlkit.
    ``resize`` defaults to ``"crop"``, the ImageNet evaluation crop ``tlkit predict`` uses.
    """
    kwargs["resize"] = kwargs.get("resize") or "crop"
    from tlkit.imagenet import class_names

    spec = tlkit.get_spec(name)
    if weights == "imagenet" and not spec.has_imagenet:
        raise ConfigError(
            f"{spec.name} has no ImageNet weights; bases that do: "
            + ", ".join(s.name for s in tlkit.list_models() if s.has_imagenet)
        )
    out = check_target(Path(out) if out else default_out(base=spec.name), kwargs.get("version"))
    (kwargs.get("progress") or _quiet)(f"building {spec.name} (weights: {weights})")
    model = tlkit.build(spec.name, weights=weights, include_preprocessing=True)
    card = {
        "base": spec.name,
        "preprocessing_mode": spec.preprocessing,
        "source": {"kind": "pretrained", "base": spec.name, "weights": str(weights)},
        **kwargs.pop("card", {}),
    }
    size = tuple(kwargs.get("input_size") or model.input_shape[1:3])
    kwargs["tflite"] = tflite_data(kwargs, size=size, resize=kwargs["resize"])
    return export_model(model, class_names(), out, card=card, **kwargs)


def export_run(run_dir: str | Path, out: str | Path | None = None, **kwargs: Any) -> ExportResult:
    """Export a finetuning run's best checkpoint with its labels and metrics (``tlkit export RUN_DIR``).

    ``resize`` defaults to ``"plain"``: images are resized as the run's validation images
    were, so the export reproduces the run's metrics. ``run_url``: the store URL ``run_dir`` was
    downloaded from, recorded in the card instead.
    """
    from tlkit.finetune.evaluation_runs import load_run
    from tlkit.finetune.rundir import RunDir

    kwargs["resize"] = kwargs.get("resize") or "plain"
    # A run read from a store (a downloaded copy): the card names the URL, not the temporary copy.
    run_url = kwargs.pop("run_url", None)

    run = Path(run_dir)
    out = check_target(Path(out) if out else default_out(run_dir=run), kwargs.get("version"))
    (kwargs.get("progress") or _quiet)(f"loading the run {run}")
    model, labels, config = load_run(run)
    from tlkit.finetune.multilabel import is_multi_label, read_thresholds

    if is_multi_label(model):  # scores per class plus the labels at or above the run's thresholds
        extra = sorted(set(kwargs.get("formats", ())) - {"saved_model"})
        if extra:
            raise ConfigError(
                f"--format {extra[0]} is not available for a multi-label run (its accuracy checks are single-label); "
                f"export the SavedModel alone"
            )
        kwargs["thresholds"] = read_thresholds(run, labels)
    metrics = RunDir(run).read_json("metrics.json")  # a damaged one is named, not a traceback
    base = config.get("base")
    mode = None
    try:
        mode = tlkit.get_spec(base).preprocessing if base else None
    except KeyError:
        pass
    checkpoint = getattr(RunDir(run).checkpoint(), "name", None)  # best.keras, else last.keras
    card = {
        "base": base,
        "preprocessing_mode": mode,
        "metrics": metrics,
        "source": {
            "kind": "run",
            "run_dir": run_url or str(run.resolve()),
            "checkpoint": checkpoint,
            "data": config.get("data"),
        },
        **kwargs.pop("card", {}),
    }
    input_size = kwargs.pop("input_size", None) or config.get("input_size")
    size = tuple(input_size or model.input_shape[1:3])
    kwargs["tflite"] = tflite_data(kwargs, size=size, resize=kwargs["resize"], config=config)
    if "onnx" in kwargs.get("formats", ()) and kwargs.get("verify", True) and "validation" not in kwargs:
        # ONNX's check runs on the run's validation images too: the TFLite step's, or read for it alone.
        data = kwargs["tflite"]
        if data is not None and data.validation is not None:
            kwargs["validation"], kwargs["validation_source"] = data.validation, data.validation_source
        else:
            kwargs["validation"], _, kwargs["validation_source"] = validation_pixels(
                config, size, kwargs.get("progress") or _quiet
            )
    return export_model(model, labels, out, card=card, input_size=input_size, **kwargs)
