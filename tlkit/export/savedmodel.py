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

Decoding, resizing and normalisation are in the graph (the Keras model carries its
:class:`tlkit.models.preprocessing.Preprocess` layer), so a client sends only the bytes it
has. Every image's header is read in the graph before anything is decoded, and a request
holding an image of more than ``max_pixels`` pixels (``tlkit export --max-pixels``; default
:data:`tlkit.data.images.MAX_PIXELS`, as ``tlkit predict``) is refused without allocating it;
so are an empty request, bytes of no supported format and data the decoder rejects. Each
refusal is an ``InvalidArgumentError`` carrying one ``tlkit serving: image_bytes[i] ...``
line (:mod:`tlkit.export.serving_decode`). JPEGs are decoded with libjpeg's accurate IDCT, as PIL
and tlkit's data pipeline do. Resizing (``resize``): ``"crop"`` (default for ImageNet
bases) follows ``tlkit predict``: a centre crop of 87.5% of the shorter side, antialiased
bicubic, rounded to integer pixel values; ``"plain"`` the same on the whole image;
``"dataset"`` (default for runs) is how ``tlkit finetune``/``evaluate`` resize validation
images (antialiased bilinear).

An export is written to ``NAME/.tmp-N-...`` beside the target, verified in a fresh
Python process that cannot import tlkit (:mod:`tlkit.export.verify`), and only then renamed
to ``NAME/N``: a failed or interrupted (Ctrl-C, SIGTERM) export never leaves a version
behind, and an existing version is never overwritten. A temporary directory left by a
killed export is ignored by the version numbering and removed by the next export into the
same directory once its process is gone (:mod:`tlkit.export.versions`).

``formats=("saved_model", "tflite")`` (``--format tflite``) adds ``N/tflite/``: float32
and dynamic-range int8 models of ``predict_pixels`` with a copy of labels.txt. Both are
measured against the Keras model on a sample (the run's validation images, up to
:data:`TFLITE_VALIDATION_IMAGES`, plus synthetic crops of photos and the probes): float32
must match, int8's top-1 agreement and score differences go into the card.

``progress`` (a callable taking one line) is told each step: building or loading the
model, writing, verifying, done.
"""

from __future__ import annotations

import contextlib
import datetime
import json
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
import tensorflow as tf

import tlkit
from tlkit._io import move_into_place
from tlkit.data.images import CROP_FRACTION, MAX_PIXELS
from tlkit.errors import ConfigError, ExportError
from tlkit.export.serving_decode import (  # noqa: F401  (re-exported)
    BAD_IMAGE_MESSAGE,
    BYTES_INPUT,
    RESIZE_MODES,
    decode_images,
    error_line,
    resize_pixels,
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
    _tflite_interpreter,
    card_verification,
    check_export,
    png_header_only,
    probe_images,
    read_card,
    resolve_export_dir,
    synthetic_pixels,
    verify_export,
    verify_tflite,
)
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

SERVING_SIGNATURE = "serving_default"
OUTPUT_KEYS = ("scores", "top_k_ids", "top_k_labels", "top_k_scores")
DEFAULT_TOP_K = 5
FORMATS = ("saved_model", "tflite")
TFLITE_VALIDATION_IMAGES = 256  # validation images in the TFLite check (all of them up to this many)

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


# --- the serving module -------------------------------------------------------------------------

def _check_labels(labels: Sequence[str]) -> list[str]:
    labels = [str(c) for c in labels]
    if not labels:
        raise ExportError("no class names to export")
    bad = [c for c in labels if "\n" in c or "\r" in c or c == ""]
    if bad:
        # labels.txt has one name per line: a line break inside a name would shift every class.
        raise ExportError(f"class names must be non-empty and contain no line breaks: {bad[:5]!r}")
    return labels


def _model_size(model: Any, input_size: Sequence[int] | None) -> tuple[int, int]:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ExportError(f"the model must take RGB images [B, H, W, 3]; its input is {shape}")
    size = tuple(int(v) for v in input_size) if input_size else tuple(shape[1:3])
    if len(size) != 2 or any(v is None or int(v) < 1 for v in size):
        raise ExportError(f"the model's input size is not fixed ({shape}); pass input_size=(H, W)")
    if shape[1] is not None and shape[1:3] != size:
        raise ExportError(f"input_size {size} does not match the model's input {shape[1:3]}")
    return int(size[0]), int(size[1])


class ServingModule(tf.Module):
    """The exported object: the model's variables, the label table and both signatures."""

    def __init__(self, model: Any, labels_path: str, *, size: tuple[int, int], top_k: int,
                 resize: str, max_pixels: int = MAX_PIXELS) -> None:
        super().__init__(name="tlkit_serving")
        self.size = size
        self.top_k = top_k
        self.resize = resize
        self.max_pixels = int(max_pixels)
        # The Keras model object is not tracked, so loading needs neither Keras nor tlkit; its
        # variables are tracked after tracing (see signatures()).
        self._model = _Untracked(model)
        # A string path becomes a tf.saved_model.Asset: copied into assets/ and re-pointed on load.
        initializer = tf.lookup.TextFileInitializer(
            labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE)
        self.labels = tf.lookup.StaticHashTable(initializer, default_value="")
        h, w = size
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
        self.serve_pixels = tf.function(
            self._serve_pixels, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)])

    def _outputs(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.cast(self._model.obj(pixels, training=False), tf.float32)
        top_scores, top_ids = tf.math.top_k(scores, k=self.top_k)
        return {"scores": scores, "top_k_ids": top_ids,
                "top_k_labels": self.labels.lookup(tf.cast(top_ids, tf.int64)),
                "top_k_scores": top_scores}

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(decode_images(image_bytes, self.size, self.resize, self.max_pixels))

    def _serve_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(pixels)

    def signatures(self) -> dict[str, Any]:
        """Trace both signatures and track the tf.Variables they capture."""
        fns = {SERVING_SIGNATURE: self.serve_bytes.get_concrete_function(),
               PIXELS_SIGNATURE: self.serve_pixels.get_concrete_function()}
        # Track the captured tf.Variables themselves, not the Keras wrappers around them: with
        # the wrappers, TF2 loading works but TF1-style loading (saved_model_cli run, older
        # TF Serving paths) restores no values ("Could not find variable ...").
        seen: dict[int, Any] = {}
        for fn in fns.values():
            for v in fn.variables:
                seen.setdefault(id(v), v)
        self.model_variables = list(seen.values())
        return fns


class _Untracked:
    """Hides an object from tf.Module's attribute tracking (see ServingModule)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def save_serving_model(model: Any, labels: Sequence[str], path: str | Path, *, top_k: int = DEFAULT_TOP_K,
                       resize: str = "crop", input_size: Sequence[int] | None = None,
                       max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """Write the SavedModel (no card, no verification) to ``path``; returns its facts."""
    labels = _check_labels(labels)
    max_pixels = check_max_pixels(max_pixels)
    size = _model_size(model, input_size)
    if resize not in RESIZE_MODES:
        raise ExportError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    n_out = model.output_shape[-1] if len(tuple(model.output_shape)) == 2 else None
    if n_out != len(labels):
        raise ExportError(f"the model outputs {model.output_shape}, but there are {len(labels)} class names")
    if top_k < 1:
        raise ExportError(f"top_k must be >= 1, got {top_k}")
    k = min(int(top_k), len(labels))
    with tempfile.TemporaryDirectory(prefix="tlkit-labels-") as scratch:
        labels_path = os.path.join(scratch, LABELS_FILE)
        with open(labels_path, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(c + "\n" for c in labels))
        module = ServingModule(model, labels_path, size=size, top_k=k, resize=resize, max_pixels=max_pixels)
        tf.saved_model.save(module, str(path), signatures=module.signatures())
    return {"input_size": list(size), "top_k": k, "resize": resize, "num_classes": len(labels),
            "max_pixels": max_pixels}


def check_max_pixels(max_pixels: int) -> int:
    """The pixel limit as an int >= 1 (the graph compares with it as a float64)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ConfigError(f"max_pixels (--max-pixels) must be a whole number >= 1, got {max_pixels!r}")
    return int(max_pixels)


# --- TFLite ----------------------------------------------------------------------------------------

def save_tflite(model: Any, export_dir: str | Path, *, size: tuple[int, int], top_k: int) -> dict[str, Any]:
    """``export_dir/tflite/``: float32 and int8 (dynamic-range) models and a copy of labels.txt.

    TFLite has no image decoders and limited string support, so its one signature is
    ``predict_pixels``: ``pixels`` float32 [B, H, W, 3] 0..255 -> ``scores``, ``top_k_ids``,
    ``top_k_scores``; names come from labels.txt (line i = class i), as TFLite apps expect.
    """
    d = Path(export_dir) / TFLITE_DIR
    d.mkdir()
    shutil.copyfile(Path(export_dir) / "assets" / LABELS_FILE, d / LABELS_FILE)
    h, w = size

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)])
    def predict_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.cast(model(pixels, training=False), tf.float32)
        top_scores, top_ids = tf.math.top_k(scores, k=top_k)
        return {"scores": scores, "top_k_ids": top_ids, "top_k_scores": top_scores}

    fn = predict_pixels.get_concrete_function()
    module = tf.Module()
    module.predict_pixels = predict_pixels
    module.model_variables = list(fn.variables)  # the tf.Variables themselves (see ServingModule)
    files = {}
    with tempfile.TemporaryDirectory(prefix="tlkit-tflite-") as scratch:
        # Converting from a pixels-only SavedModel keeps a named signature in the .tflite file;
        # the serving SavedModel itself (strings, hash table, decoders) is not convertible.
        tf.saved_model.save(module, scratch, signatures={PIXELS_SIGNATURE: fn})
        for variant in TFLITE_VARIANTS:
            converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=[PIXELS_SIGNATURE])
            if variant == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            path = d / f"model_{variant}.tflite"
            path.write_bytes(converter.convert())
            files[variant] = {"file": f"{TFLITE_DIR}/{path.name}", "bytes": path.stat().st_size}
    outputs = {k: v for k, v in _output_spec(int(model.output_shape[-1]), top_k).items() if k != "top_k_labels"}
    return {"signature": PIXELS_SIGNATURE, "inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
            "outputs": outputs, "labels": f"{TFLITE_DIR}/{LABELS_FILE}", "models": files,
            "int8": "dynamic-range quantisation: int8 weights, float32 activations"}


# --- export ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so the cleanup below runs (a plain SIGTERM
    would end the process without it); the previous handler is restored. Only from the main
    thread, and only over Python's default handler (an application's own one is left alone)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def tflite_check_pixels(size: tuple[int, int], resize: str, probes: Sequence[bytes] | None = None,
                        validation: np.ndarray | None = None, validation_source: str | None = None
                        ) -> tuple[np.ndarray, dict[str, Any]]:
    """The TFLite check's sample: validation images (if any), synthetic crops, the probes; and its description."""
    probe_pixels = decode_images(tf.constant(list(probes) if probes else probe_images()), size, resize).numpy()
    parts = [synthetic_pixels(size), probe_pixels]
    sample: dict[str, Any] = {"synthetic": len(parts[0]), "probes": len(probe_pixels)}
    if validation is not None and len(validation):
        parts.insert(0, np.asarray(validation, np.float32))
        sample = {"validation": len(validation), "validation_source": validation_source, **sample}
    pixels = np.concatenate(parts)
    sample["images"] = len(pixels)
    return pixels, sample


def export_model(model: Any, labels: Sequence[str], out: str | Path, *, version: int | None = None,
                 top_k: int = DEFAULT_TOP_K, resize: str = "crop", input_size: Sequence[int] | None = None,
                 card: dict[str, Any] | None = None, verify: bool = True,
                 probes: Sequence[bytes] | None = None, tolerance: float = TOLERANCE,
                 formats: Sequence[str] = ("saved_model",), max_pixels: int = MAX_PIXELS,
                 validation: np.ndarray | None = None, validation_source: str | None = None,
                 progress: Progress | None = None) -> ExportResult:
    """Export a Keras classifier taking raw 0..255 RGB pixels to ``out/N``; see the module docstring.

    ``card`` adds fields to the model card (base, preprocessing mode, metrics, source).
    With ``verify`` (the default) the export is reloaded in a fresh process and compared
    with ``model`` on ``probes`` (default: :func:`probe_images`); a mismatch raises
    :class:`VerificationError` and nothing is left behind. ``max_pixels`` is the serving
    graph's limit on an image's pixels, read from its header before decoding. ``formats``
    may add ``"tflite"``: ``N/tflite/`` then holds float32 and dynamic-range int8 models and
    the same labels.txt (the SavedModel is always written: it is what TF Serving loads and
    the reference); ``validation`` (float32 [N, H, W, 3] at the model's size) joins their check.
    """
    say = progress or _quiet
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown export format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}")
    max_pixels = check_max_pixels(max_pixels)
    out = check_out_dir(Path(out).resolve())  # resolved: the verifying process runs in another directory
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
            facts = save_serving_model(model, labels, tmp, top_k=top_k, resize=resize, input_size=input_size,
                                       max_pixels=max_pixels)
            model_card = make_card(labels, facts, card or {}, version=n)
            _write_card(tmp, model_card)
            report = None
            if verify:
                say("verifying the SavedModel in a fresh Python process (plain TensorFlow, no tlkit)")
                report = verify_export(tmp, model=model, probes=probes, tolerance=tolerance)
                model_card["verification"] = card_verification(report)
                _write_card(tmp, model_card)
            if "tflite" in formats:
                say("converting to TFLite (float32 and int8)")
                size = tuple(facts["input_size"])
                model_card["tflite"] = save_tflite(model, tmp, size=size, top_k=facts["top_k"])
                if verify:
                    pixels, sample = tflite_check_pixels(size, resize, probes, validation, validation_source)
                    say(f"checking the TFLite models on {len(pixels)} images")
                    model_card["tflite"]["verification"] = verify_tflite(tmp, model, pixels, tolerance=tolerance,
                                                                         sample=sample)
                _write_card(tmp, model_card)
            refuse_existing(target, out)  # another export may have taken N meanwhile
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a server may run as another user
            # Same directory, same file system: the rename is atomic, so a watcher (TF Serving)
            # sees either no version N or a complete, verified one.
            move_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if report is not None:
        report["path"] = str(target)
    say(f"done: {target}")
    return ExportResult(path=target, version=n, card=model_card, verification=report, model=model)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_card(labels: Sequence[str], facts: dict[str, Any], extra: dict[str, Any], *, version: int) -> dict:
    """The model card written as ``tlkit.json`` (``extra`` overrides and adds fields)."""
    import keras

    extra = dict(extra)
    h, w = facts["input_size"]
    pre = {"mode": extra.pop("preprocessing_mode", None), "in_graph": True,
           "decode": "JPEG: tf.io.decode_jpeg(dct_method='INTEGER_ACCURATE'); PNG, BMP, GIF (first frame): "
                     "tf.io.decode_image; grayscale and RGBA become RGB; headers checked first "
                     "(tlkit.export.serving_decode)",
           "resize": facts["resize"],
           "crop_fraction": CROP_FRACTION if facts["resize"] == "crop" else None,
           "interpolation": ("bilinear, antialiased, unrounded (tlkit.data.augment.resize, as the data pipeline)"
                             if facts["resize"] == "dataset" else
                             "bicubic, antialiased, rounded to integers in 0..255 (as tlkit predict)"),
           "model_input": f"float32 RGB 0..255, {h}x{w}"}
    card = {
        "format": "tlkit-saved-model/1",
        "version": version,
        "base": extra.pop("base", None),
        "classes": list(labels),
        "num_classes": len(labels),
        "input_size": [h, w],
        "preprocessing": pre,
        "top_k": facts["top_k"],
        # The serving graph refuses an image whose header declares more pixels (all GIF frames
        # together), before decoding it.
        "max_pixels": facts["max_pixels"],
        "signatures": {
            SERVING_SIGNATURE: {"inputs": {BYTES_INPUT: ["string", [-1]]},
                                "outputs": _output_spec(len(labels), facts["top_k"])},
            PIXELS_SIGNATURE: {"inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
                               "outputs": _output_spec(len(labels), facts["top_k"])},
        },
        "labels_asset": f"assets/{LABELS_FILE}",
        "metrics": extra.pop("metrics", None),
        "source": extra.pop("source", None),
        "tlkit_version": tlkit.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    card.update(extra)
    return card


def _output_spec(c: int, k: int) -> dict[str, list]:
    return {"scores": ["float32", [-1, c]], "top_k_ids": ["int32", [-1, k]],
            "top_k_labels": ["string", [-1, k]], "top_k_scores": ["float32", [-1, k]]}


def _write_card(path: Path, card: dict[str, Any]) -> None:
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")


def export_base(name: str, out: str | Path | None = None, *, weights: str = "imagenet",
                **kwargs: Any) -> ExportResult:
    """Export a pretrained ImageNet classifier from the registry (``tlkit export --base``).

    The model gets the base's :class:`~tlkit.models.preprocessing.Preprocess` in front, so the
    export takes raw pixels; classes are the 1000 ImageNet names shipped with tlkit.
    ``resize`` defaults to ``"crop"``, the ImageNet evaluation crop ``tlkit predict`` uses.
    """
    kwargs["resize"] = kwargs.get("resize") or "crop"
    import keras

    from tlkit.imagenet import class_names
    from tlkit.models.preprocessing import Preprocess

    spec = tlkit.get_spec(name)
    if weights == "imagenet" and not spec.has_imagenet:
        raise ConfigError(f"{spec.name} has no ImageNet weights; bases that do: "
                         + ", ".join(s.name for s in tlkit.list_models() if s.has_imagenet))
    out = check_target(Path(out) if out else default_out(base=spec.name), kwargs.get("version"))
    (kwargs.get("progress") or _quiet)(f"building {spec.name} (weights: {weights})")
    base = tlkit.build(spec.name, weights=weights)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    model = keras.Model(inputs, base(x), name=f"{spec.name}_imagenet")
    card = {"base": spec.name, "preprocessing_mode": spec.preprocessing,
            "source": {"kind": "pretrained", "base": spec.name, "weights": str(weights)},
            **kwargs.pop("card", {})}
    return export_model(model, class_names(), out, card=card, **kwargs)


def export_run(run_dir: str | Path, out: str | Path | None = None, **kwargs: Any) -> ExportResult:
    """Export a finetuning run's best checkpoint with its labels and metrics (``tlkit export RUN_DIR``).

    ``resize`` defaults to ``"dataset"``: images are resized as the run's validation images
    were, so the export reproduces the run's metrics.
    """
    from tlkit.finetune.evaluation_runs import load_run
    from tlkit.finetune.rundir import RunDir

    kwargs["resize"] = kwargs.get("resize") or "dataset"

    run = Path(run_dir)
    out = check_target(Path(out) if out else default_out(run_dir=run), kwargs.get("version"))
    (kwargs.get("progress") or _quiet)(f"loading the run {run}")
    model, labels, config = load_run(run)
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    base = config.get("base")
    mode = None
    try:
        mode = tlkit.get_spec(base).preprocessing if base else None
    except KeyError:
        pass
    checkpoint = getattr(RunDir(run).checkpoint(), "name", None)  # best.keras, else last.keras
    card = {"base": base, "preprocessing_mode": mode, "metrics": metrics,
            "source": {"kind": "run", "run_dir": str(run.resolve()), "checkpoint": checkpoint,
                       "data": config.get("data")},
            **kwargs.pop("card", {})}
    input_size = kwargs.pop("input_size", None) or config.get("input_size")
    if "tflite" in kwargs.get("formats", ()) and kwargs.get("verify", True) and "validation" not in kwargs:
        kwargs["validation"], kwargs["validation_source"] = _validation_pixels(
            config, tuple(input_size or model.input_shape[1:3]), kwargs.get("progress") or _quiet)
    return export_model(model, labels, out, card=card,
                        input_size=input_size, **kwargs)


def _validation_pixels(config: dict[str, Any], size: tuple[int, int], say: Progress,
                       limit: int = TFLITE_VALIDATION_IMAGES) -> tuple[np.ndarray | None, str | None]:
    """Up to ``limit`` of the run's validation images, resized as its evaluation fed them.

    For the TFLite check only: when the data is gone or unreadable, the check uses its
    synthetic images and the probes, and says so (the export does not fail for it).
    """
    from tlkit.data import pipeline as tldata
    from tlkit.errors import TlkitError

    spec = config.get("data")
    if not spec:
        return None, None
    try:
        source = tldata.resolve(spec, val_split=config.get("val_split", 0.2), seed=config.get("seed", 0),
                                tfds_data_dir=config.get("tfds_data_dir"), min_classes=1)
        split = "val" if tldata.dataset_size(source, "val") > 0 else None
        if split is None:
            return None, None
        ds = tldata.make_dataset(source, split, image_size=size, batch_size=32, training=False)
        batches = []
        for x, _ in ds:
            batches.append(x.numpy())
            if sum(len(b) for b in batches) >= limit:
                break
        pixels = np.concatenate(batches)[:limit]
    except (TlkitError, OSError, tf.errors.OpError) as exc:
        say(f"the run's validation images cannot be read ({str(exc).splitlines()[0][:200]}); the TFLite check "
            "uses synthetic images only")
        return None, None
    return pixels, f"{spec} ({split}, first {len(pixels)})"


