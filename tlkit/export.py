"""Export a classifier as a TensorFlow Serving SavedModel: image bytes in, labels out.

Layout (what TensorFlow Serving watches)::

    saved_models/NAME/N/            N = integer version, next free one by default
        saved_model.pb, variables/  the graph: decode -> resize -> model -> top-K
        assets/labels.txt           class names, one per line; the graph's lookup table reads it
        tlkit.json                  model card (base, classes, input size, preprocessing, metrics, ...)

Signatures:

* ``serving_default``: ``image_bytes`` (tf.string [B]: JPEG/PNG/BMP/GIF bytes) ->
  ``scores`` float32 [B, C], ``top_k_ids`` int32 [B, K], ``top_k_labels`` string [B, K],
  ``top_k_scores`` float32 [B, K].
* ``predict_pixels``: ``pixels`` (float32 [B, H, W, 3], RGB 0..255 at the model's input size)
  -> the same four outputs.

Decoding, resizing and normalisation are in the graph (the Keras model carries its
:class:`tlkit.preprocessing.Preprocess` layer), so a client sends only the bytes it
has. JPEGs are decoded with libjpeg's accurate IDCT, as PIL and tlkit's data pipeline
do. Resizing (``resize``): ``"crop"`` (default for ImageNet bases) follows ``tlkit
predict``: a centre crop of 87.5% of the shorter side, antialiased bicubic, rounded to
integer pixel values; ``"plain"`` the same on the whole image; ``"dataset"`` (default for
runs) is how ``tlkit finetune``/``evaluate`` resize validation images (antialiased bilinear).

An export is written to ``NAME/.tmp-N-...`` beside the target, verified in a fresh
Python process that cannot import tlkit, and only then renamed to ``NAME/N``: a
failed or interrupted export never leaves a version behind, and an existing version
is never overwritten. A temporary directory left by a killed export is ignored by
the version numbering and removed by the next export once its process is gone.

``formats=("saved_model", "tflite")`` (``--format tflite``) adds ``N/tflite/``: float32
and dynamic-range int8 models of ``predict_pixels`` with a copy of labels.txt.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

import tlkit
from tlkit.errors import AlreadyExistsError, ConfigError, NotFoundError
from tlkit.images import CROP_FRACTION  # the same centre crop as `tlkit predict`

MODEL_CARD = "tlkit.json"
LABELS_FILE = "labels.txt"
SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
# "_bytes": the suffix Google's serving front ends (AI Platform / Vertex) use to base64-decode a JSON input.
BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
OUTPUT_KEYS = ("scores", "top_k_ids", "top_k_labels", "top_k_scores")
DEFAULT_TOP_K = 5
# crop / plain: as `tlkit predict` (its --resize); dataset: as tlkit's tf.data pipeline feeds a run's
# evaluation (tlkit.augment.resize), so a finetuned export scores images as its metrics were measured.
RESIZE_MODES = ("crop", "plain", "dataset")
TOLERANCE = 1e-4  # max abs score difference allowed between SavedModel and Keras model
TMP_PREFIX = ".tmp-"
FORMATS = ("saved_model", "tflite")
TFLITE_DIR = "tflite"
TFLITE_VARIANTS = ("float32", "int8")  # int8: dynamic-range quantised weights, float activations
INT8_TOLERANCE = 0.1  # max abs score difference of the int8 model; quantisation error, not a bug
BAD_IMAGE_MESSAGE = "is not a JPEG, PNG, BMP or GIF image"
VERIFY_TIMEOUT_S = 600


from tlkit.errors import ExportError  # noqa: E402  (re-exported)


class VerificationError(ExportError):
    """The reloaded SavedModel does not behave like the model it was exported from."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote: the version directory, its number and model card."""

    path: Path
    version: int
    card: dict[str, Any]
    verification: dict[str, Any] | None = None
    model: Any = field(default=None, repr=False)  # the Keras model that was exported


# --- in-graph decoding --------------------------------------------------------------------------

def _looks_like_image(data: tf.Tensor) -> tf.Tensor:
    """True if the bytes start with a JPEG, PNG, GIF or BMP signature (checked before decoding,
    so garbage gets a message naming the problem instead of a decoder error)."""
    head = tf.strings.substr(data, 0, 8)
    checks = [
        tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"),  # JPEG SOI + marker
        tf.equal(head, b"\x89PNG\r\n\x1a\n"),
        tf.equal(tf.strings.substr(head, 0, 4), b"GIF8"),
        tf.equal(tf.strings.substr(head, 0, 2), b"BM"),
    ]
    return tf.reduce_any(tf.stack(checks))


def resize_pixels(image: tf.Tensor, size: tuple[int, int], resize: str = "crop") -> tf.Tensor:
    """A decoded [h, w, 3] image as float32 [H, W, 3] in 0..255 at the model's size.

    ``crop`` and ``plain`` are ``tlkit predict``'s: the centre square of 87.5% of the shorter
    side, or the whole image, then bicubic with antialiasing (within 1-2 levels of the PIL
    bicubic filter predict uses), rounded as a uint8 image would be. ``dataset`` is what
    ``tlkit finetune`` / ``tlkit evaluate`` feed a model: the whole image, antialiased
    bilinear, unrounded (:func:`tlkit.augment.resize` itself).
    """
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    image = tf.convert_to_tensor(image)
    if resize == "dataset":
        from tlkit.augment import resize as dataset_resize

        return tf.ensure_shape(dataset_resize(image, size), [size[0], size[1], 3])
    if resize == "crop":
        shape = tf.shape(image)
        h, w = shape[0], shape[1]
        short = tf.cast(tf.minimum(h, w), tf.float64)
        side = tf.maximum(1, tf.cast(tf.round(short * CROP_FRACTION), tf.int32))
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top:top + side, left:left + side, :]
    out = tf.image.resize(tf.cast(image, tf.float32), size, method="bicubic", antialias=True)
    return tf.round(tf.clip_by_value(out, 0.0, 255.0))


def decode_images(image_bytes: tf.Tensor, size: tuple[int, int], resize: str = "crop") -> tf.Tensor:
    """Encoded images (tf.string [B]) -> float32 pixels [B, H, W, 3], 0..255.

    The exact function the ``serving_default`` signature runs, so callers can reproduce the
    pixels a request was classified on. Bytes that are no JPEG/PNG/BMP/GIF at all (empty,
    text, another format) raise ``InvalidArgumentError`` naming their index in the batch; a
    damaged file of a known format raises the decoder's own error ("Invalid JPEG data ...").
    """
    size = (int(size[0]), int(size[1]))
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)

    def one(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        data, index = args
        message = tf.strings.format(
            "tlkit serving: " + BYTES_INPUT + "[{}] " + BAD_IMAGE_MESSAGE + " ({} bytes)",
            (index, tf.strings.length(data)))
        check = tf.debugging.Assert(_looks_like_image(data), [message], summarize=1)
        with tf.control_dependencies([check]):
            image = tf.cond(tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff"),
                            # libjpeg's accurate integer IDCT, as PIL and tlkit's data pipeline decode:
                            # decode_image's default (fast IDCT) differs by up to ~10 levels.
                            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                            # GIFs give their first frame; grayscale and RGBA become RGB (alpha dropped).
                            lambda: tf.io.decode_image(data, channels=3, expand_animations=False,
                                                       dtype=tf.uint8))
        image = tf.ensure_shape(image, [None, None, 3])
        return resize_pixels(image, size, resize)

    n = tf.shape(image_bytes)[0]
    return tf.map_fn(one, (image_bytes, tf.range(n)),
                     fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))


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
                 resize: str) -> None:
        super().__init__(name="tlkit_serving")
        self.size = size
        self.top_k = top_k
        self.resize = resize
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
        return self._outputs(decode_images(image_bytes, self.size, self.resize))

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
                       resize: str = "crop", input_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Write the SavedModel (no card, no verification) to ``path``; returns its facts."""
    labels = _check_labels(labels)
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
        module = ServingModule(model, labels_path, size=size, top_k=k, resize=resize)
        tf.saved_model.save(module, str(path), signatures=module.signatures())
    return {"input_size": list(size), "top_k": k, "resize": resize, "num_classes": len(labels)}


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


def _tflite_interpreter(path: Path) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about moving to ai_edge_litert
        return tf.lite.Interpreter(model_path=str(path))


def verify_tflite(export_dir: str | Path, model: Any, pixels: np.ndarray, *,
                  tolerance: float = TOLERANCE, int8_tolerance: float = INT8_TOLERANCE) -> dict[str, Any]:
    """Run each .tflite model on ``pixels`` and compare with the Keras model; raise on mismatch."""
    d = Path(export_dir) / TFLITE_DIR
    ref = np.asarray(model(pixels, training=False), dtype=np.float32)
    report: dict[str, Any] = {}
    problems = []
    for variant in TFLITE_VARIANTS:
        runner = _tflite_interpreter(d / f"model_{variant}.tflite").get_signature_runner(PIXELS_SIGNATURE)
        got = runner(**{PIXELS_INPUT: pixels.astype(np.float32)})
        diff = float(np.max(np.abs(got["scores"] - ref)))
        agree = float(np.mean(got["top_k_ids"][:, 0] == ref.argmax(axis=1)))
        report[variant] = {"max_abs_diff_vs_keras": diff, "top1_agreement": agree}
        limit = tolerance if variant == "float32" else int8_tolerance
        if not diff <= limit:
            problems.append(f"TFLite {variant} scores differ from the Keras model's by {diff:.3g} (limit {limit:g})")
    labels = (d / LABELS_FILE).read_text(encoding="utf-8")
    if labels != (Path(export_dir) / "assets" / LABELS_FILE).read_text(encoding="utf-8"):
        problems.append("tflite/labels.txt differs from the SavedModel's labels asset")
    if problems:
        raise VerificationError("TFLite verification failed:\n  - " + "\n  - ".join(problems))
    report["passed"] = True
    return report


# --- versions and the atomic write ----------------------------------------------------------------

def existing_versions(out: str | Path) -> list[int]:
    """Integer version directories under ``out`` (temporary and other entries ignored)."""
    root = Path(out)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(out: str | Path) -> int:
    """The next free version: the highest existing one + 1, or 1."""
    versions = existing_versions(out)
    return versions[-1] + 1 if versions else 1


def _tmp_name(version: int) -> str:
    return f"{TMP_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp_dirs(out: str | Path, *, max_age_s: float = 24 * 3600) -> list[Path]:
    """Remove temporary export directories whose exporting process is gone; returns them.

    A directory from this host is stale when its process no longer runs; one from
    another host (shared file system) only when older than ``max_age_s``, since its
    process cannot be checked from here.
    """
    removed = []
    root = Path(out)
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for p in root.iterdir():
        if not (p.is_dir() and p.name.startswith(TMP_PREFIX)):
            continue
        parts = p.name[len(TMP_PREFIX):].split("-")
        try:
            pid = int(parts[-2])
            p_host = "-".join(parts[1:-2])
        except (ValueError, IndexError):
            continue  # not one of ours
        if p_host == host:
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            stale = time.time() - p.stat().st_mtime > max_age_s
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _resolve_version(out: Path, version: int | None) -> int:
    if version is None:
        return next_version(out)
    version = int(version)
    if version < 1:
        raise ConfigError(f"--version must be a positive integer, got {version}")
    return version


def _refuse_early(out: Path, version: int | None) -> None:
    """Refuse an existing explicit version before the (slow) model build or load."""
    if version is not None:
        _refuse_existing(out / str(_resolve_version(out, version)), out)


def _refuse_existing(target: Path, out: Path) -> None:
    if target.exists():
        raise AlreadyExistsError(
            f"{target} already exists and versions are never overwritten; omit --version for the next free "
            f"one ({next_version(out)})")


# --- export ---------------------------------------------------------------------------------------

def export_model(model: Any, labels: Sequence[str], out: str | Path, *, version: int | None = None,
                 top_k: int = DEFAULT_TOP_K, resize: str = "crop", input_size: Sequence[int] | None = None,
                 card: dict[str, Any] | None = None, verify: bool = True,
                 probes: Sequence[bytes] | None = None, tolerance: float = TOLERANCE,
                 formats: Sequence[str] = ("saved_model",)) -> ExportResult:
    """Export a Keras classifier taking raw 0..255 RGB pixels to ``out/N``; see the module docstring.

    ``card`` adds fields to the model card (base, preprocessing mode, metrics, source).
    With ``verify`` (the default) the export is reloaded in a fresh process and compared
    with ``model`` on ``probes`` (default: :func:`probe_images`); a mismatch raises
    :class:`VerificationError` and nothing is left behind. ``formats`` may add ``"tflite"``:
    ``N/tflite/`` then holds float32 and dynamic-range int8 models and the same labels.txt
    (the SavedModel is always written: it is what TF Serving loads and the reference).
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown export format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}")
    out = Path(out).resolve()  # the verifying process runs in another directory
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_dirs(out)
    n = _resolve_version(out, version)
    target = out / str(n)
    _refuse_existing(target, out)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_name(n), dir=out))
    try:
        facts = save_serving_model(model, labels, tmp, top_k=top_k, resize=resize, input_size=input_size)
        model_card = make_card(labels, facts, card or {}, version=n)
        _write_card(tmp, model_card)
        report = None
        if verify:
            report = verify_export(tmp, model=model, probes=probes, tolerance=tolerance)
            model_card["verification"] = _card_verification(report)
            _write_card(tmp, model_card)
        if "tflite" in formats:
            model_card["tflite"] = save_tflite(model, tmp, size=tuple(facts["input_size"]), top_k=facts["top_k"])
            if verify:
                pixels = decode_images(tf.constant(list(probes) if probes else probe_images()),
                                       tuple(facts["input_size"]), resize).numpy()
                model_card["tflite"]["verification"] = verify_tflite(tmp, model, pixels, tolerance=tolerance)
            _write_card(tmp, model_card)
        _refuse_existing(target, out)  # another export may have taken N meanwhile
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a server may run as another user
        # Same directory, same file system: the rename is atomic, so a watcher (TF Serving)
        # sees either no version N or a complete, verified one.
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if report is not None:
        report["path"] = str(target)
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
                     "tf.io.decode_image; grayscale and RGBA become RGB",
           "resize": facts["resize"],
           "crop_fraction": CROP_FRACTION if facts["resize"] == "crop" else None,
           "interpolation": ("bilinear, antialiased, unrounded (tlkit.augment.resize, as the data pipeline)"
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


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of an export directory."""
    p = Path(path) / MODEL_CARD
    if not p.is_file():
        raise NotFoundError(f"{path} has no {MODEL_CARD}: not a tlkit export")
    return json.loads(p.read_text(encoding="utf-8"))


def _card_verification(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("passed", "max_abs_diff_bytes_vs_pixels", "max_abs_diff_vs_keras", "max_abs_diff_session_vs_eager",
            "tolerance", "probes",
            "bad_request_error", "seconds")
    return {k: report[k] for k in keep if k in report}


def export_base(name: str, out: str | Path | None = None, *, weights: str = "imagenet",
                **kwargs: Any) -> ExportResult:
    """Export a pretrained ImageNet classifier from the registry (``tlkit export --base``).

    The model gets the base's :class:`~tlkit.preprocessing.Preprocess` in front, so the
    export takes raw pixels; classes are the 1000 ImageNet names shipped with tlkit.
    ``resize`` defaults to ``"crop"``, the ImageNet evaluation crop ``tlkit predict`` uses.
    """
    kwargs["resize"] = kwargs.get("resize") or "crop"
    import keras

    from tlkit.imagenet import class_names
    from tlkit.preprocessing import Preprocess

    spec = tlkit.get_spec(name)
    if weights == "imagenet" and not spec.has_imagenet:
        raise ConfigError(f"{spec.name} has no ImageNet weights; bases that do: "
                         + ", ".join(s.name for s in tlkit.list_models() if s.has_imagenet))
    out = Path(out) if out else Path("saved_models") / spec.name
    _refuse_early(out, kwargs.get("version"))
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
    from tlkit.evaluation_runs import load_run
    from tlkit.rundir import RunDir

    kwargs["resize"] = kwargs.get("resize") or "dataset"

    run = Path(run_dir)
    out = Path(out) if out else Path("saved_models") / run.resolve().name
    _refuse_early(out, kwargs.get("version"))
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
    return export_model(model, labels, out, card=card,
                        input_size=input_size, **kwargs)


# --- verification in a fresh process --------------------------------------------------------------

def probe_images() -> list[bytes]:
    """Probe requests for verification: a real photo (JPEG) and small PNG, BMP and GIF images
    in other sizes and modes (grayscale, RGBA, palette), so every decoder path is exercised."""
    from PIL import Image
    from skimage import data

    def enc(im: Image.Image, fmt: str, **kw: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    yy, xx = np.mgrid[0:97, 0:131]
    gray = ((xx * 2 + yy) % 256).astype(np.uint8)
    rgba = np.stack([gray, 255 - gray, (xx * 7 % 256).astype(np.uint8), np.full_like(gray, 200)], -1)
    return [enc(Image.fromarray(data.chelsea()), "JPEG", quality=95),
            enc(Image.fromarray(gray, "L"), "PNG"),
            enc(Image.fromarray(rgba, "RGBA"), "PNG"),
            enc(Image.fromarray(np.ascontiguousarray(rgba[:60, :80, :3])), "BMP"),
            enc(Image.fromarray(np.ascontiguousarray(rgba[:, :, :3])).convert("P"), "GIF")]


# Runs in a fresh interpreter with plain TensorFlow: tlkit is made unimportable first, so
# the check proves the SavedModel stands alone. Reads a request JSON, writes results.
_VERIFY_SCRIPT = r'''
import json, os, sys, time
sys.modules["tlkit"] = None  # any attempt to import tlkit now fails
import numpy as np
import tensorflow as tf

path, req_path = sys.argv[1], sys.argv[2]
req = json.load(open(req_path))
t0 = time.time()
m = tf.saved_model.load(path)
load_s = time.time() - t0

def spec(s):
    return [s.dtype.name, [-1 if d is None else int(d) for d in s.shape]]

sigs = {}
for name, fn in m.signatures.items():
    inputs = {k: spec(v) for k, v in fn.structured_input_signature[1].items()}
    outputs = {k: spec(v) for k, v in fn.structured_outputs.items()}
    sigs[name] = {"inputs": inputs, "outputs": outputs}
serve = m.signatures["serving_default"]
pix = m.signatures["predict_pixels"]
images = [open(p, "rb").read() for p in req["images"]]
pixels = np.load(req["pixels"])
a = serve(image_bytes=tf.constant(images))
b = pix(pixels=tf.constant(pixels))
bad_error = None
try:
    serve(image_bytes=tf.constant([images[0], b"this is not an image"]))
except tf.errors.InvalidArgumentError as e:
    bad_error = e.message
after = serve(image_bytes=tf.constant(images[:1]))
# The way TensorFlow Serving and saved_model_cli run it: a TF1 session on the MetaGraph.
v1 = {}
with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    mg = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    for name, feed in (("serving_default", images), ("predict_pixels", pixels)):
        sd = mg.signature_def[name]
        (key, tinfo), = sd.inputs.items()
        v1[name] = sess.run(sd.outputs["scores"].name, {tinfo.name: feed})
asset = os.path.join(path, "assets", "labels.txt")
labels = open(asset, encoding="utf-8").read().split("\n")[:-1]
out = {k + "_bytes": a[k].numpy() for k in a}
out.update({k + "_pixels": b[k].numpy() for k in b})
out["scores_after_bad"] = after["scores"].numpy()
out["scores_v1_bytes"] = v1["serving_default"]
out["scores_v1_pixels"] = v1["predict_pixels"]
np.savez(req["out"], **out)
json.dump({"signatures": sigs, "bad_error": bad_error, "labels": labels, "load_s": load_s,
           "tlkit_imported": sys.modules.get("tlkit") is not None},
          open(req["out"] + ".json", "w"))
'''


def _run_fresh(path: Path, probes: Sequence[bytes], pixels: np.ndarray, scratch: Path,
               timeout: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    files = []
    for i, data in enumerate(probes):
        f = scratch / f"probe{i}"
        f.write_bytes(data)
        files.append(str(f))
    np.save(scratch / "pixels.npy", pixels)
    req = {"images": files, "pixels": str(scratch / "pixels.npy"), "out": str(scratch / "result.npz")}
    (scratch / "request.json").write_text(json.dumps(req))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.run([sys.executable, "-c", _VERIFY_SCRIPT, str(path), str(scratch / "request.json")],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=str(scratch))
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise VerificationError(f"the SavedModel at {path} failed in a fresh Python process:\n{tail}")
    meta = json.loads((scratch / "result.npz.json").read_text())
    with np.load(scratch / "result.npz", allow_pickle=True) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def _expect_signatures(meta_sigs: dict[str, Any], card: dict[str, Any]) -> list[str]:
    problems = []
    for name, want in card["signatures"].items():
        got = meta_sigs.get(name)
        if got is None:
            problems.append(f"signature {name!r} is missing")
            continue
        for part in ("inputs", "outputs"):
            w = {k: [v[0], list(v[1])] for k, v in want[part].items()}
            if got[part] != w:
                problems.append(f"{name} {part}: expected {w}, got {got[part]}")
    return problems


def verify_export(path: str | Path, *, model: Any = None, probes: Sequence[bytes] | None = None,
                  tolerance: float = TOLERANCE, timeout: float = VERIFY_TIMEOUT_S) -> dict[str, Any]:
    """Reload an export in a fresh process (plain TensorFlow, tlkit unimportable) and check it.

    Checks: both signatures with the card's names, dtypes and shapes; the same scores when
    loaded as TensorFlow Serving and ``saved_model_cli`` do (a TF1 session); the labels asset equals
    the card's classes; ``serving_default`` on the probe bytes equals ``predict_pixels`` on the
    same decoded pixels and, when ``model`` is given, the Keras model on them (max abs
    difference <= ``tolerance``); top-K ids, scores and labels agree with the scores; a
    corrupt request fails with a clear message and the next request still succeeds.
    Returns a report; raises :class:`VerificationError` listing every failed check.
    """
    started = time.time()
    path = Path(path).resolve()  # the fresh process runs in a scratch directory
    card = read_card(path)
    size = tuple(card["input_size"])
    resize = card["preprocessing"]["resize"]
    probes = list(probes) if probes is not None else probe_images()
    pixels = decode_images(tf.constant(probes), size, resize).numpy()
    with tempfile.TemporaryDirectory(prefix="tlkit-verify-") as scratch:
        meta, res = _run_fresh(path, probes, pixels, Path(scratch), timeout)

    problems = _expect_signatures(meta["signatures"], card)
    labels = card["classes"]
    if meta["labels"] != labels:
        problems.append("assets/labels.txt does not hold the card's class names")
    if meta["tlkit_imported"]:
        problems.append("the SavedModel imported tlkit")
    diff_bp = float(np.max(np.abs(res["scores_bytes"] - res["scores_pixels"])))
    if not diff_bp <= tolerance:
        problems.append(f"serving_default and predict_pixels disagree on the same pixels (max abs diff {diff_bp:.3g})")
    diff_v1 = max(float(np.max(np.abs(res["scores_v1_bytes"] - res["scores_bytes"]))),
                  float(np.max(np.abs(res["scores_v1_pixels"] - res["scores_pixels"]))))
    if not diff_v1 <= tolerance:
        problems.append(f"loaded as TensorFlow Serving does (TF1 session), the scores differ by {diff_v1:.3g}")
    diff_keras = None
    if model is not None:
        keras_scores = np.asarray(model(pixels, training=False), dtype=np.float32)
        diff_keras = float(np.max(np.abs(res["scores_bytes"] - keras_scores)))
        if not diff_keras <= tolerance:
            problems.append(f"the SavedModel's scores differ from the Keras model's by {diff_keras:.3g} "
                            f"(tolerance {tolerance:g})")
    scores = res["scores_bytes"]
    ids = res["top_k_ids_bytes"]
    k = int(card["top_k"])
    if ids.shape != (len(probes), k):
        problems.append(f"top_k_ids has shape {ids.shape}, expected {(len(probes), k)}")
    else:
        top_scores = np.take_along_axis(scores, ids.astype(np.int64), axis=1)
        if not np.allclose(top_scores, res["top_k_scores_bytes"], atol=0, rtol=0):
            problems.append("top_k_scores are not the scores at top_k_ids")
        if not np.allclose(np.sort(scores, axis=1)[:, ::-1][:, :k], res["top_k_scores_bytes"], atol=0, rtol=0):
            problems.append("top_k_scores are not the K highest scores")
        want = np.asarray(labels, dtype=object)[ids]
        got = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(res["top_k_labels_bytes"])
        if not (want == got).all():
            problems.append("top_k_labels do not name the classes at top_k_ids")
    bad = meta["bad_error"]
    if bad is None:
        problems.append("a request with corrupt bytes did not fail")
    elif BAD_IMAGE_MESSAGE not in bad or f"{BYTES_INPUT}[1]" not in bad:
        problems.append(f"a corrupt request failed without naming the bad image: {bad[:300]}")
    if not np.array_equal(res["scores_after_bad"][0], scores[0]) and \
            not np.max(np.abs(res["scores_after_bad"][0] - scores[0])) <= tolerance:
        problems.append("after a corrupt request, the model no longer answers as before")
    top1 = [{"id": int(i[0]), "label": labels[int(i[0])], "score": float(s[int(i[0])])}
            for i, s in zip(ids, scores)] if ids.ndim == 2 else []
    report = {"passed": not problems, "problems": problems, "path": str(path),
              "max_abs_diff_bytes_vs_pixels": diff_bp, "max_abs_diff_vs_keras": diff_keras,
              "max_abs_diff_session_vs_eager": diff_v1,
              "tolerance": tolerance, "probes": len(probes), "top1": top1,
              "bad_request_error": _error_line(bad),
              "load_s": meta["load_s"], "seconds": round(time.time() - started, 2)}
    if problems:
        raise VerificationError(f"verification of {path} failed:\n  - " + "\n  - ".join(problems))
    return report


def _error_line(message: str | None) -> str | None:
    """The informative line of a TensorFlow error (it starts with "Graph execution error:")."""
    if not message:
        return None
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    hit = next((ln for ln in lines if BAD_IMAGE_MESSAGE in ln), lines[-1] if lines else "")
    return hit[:300]


def resolve_export_dir(path: str | Path) -> Path:
    """A version directory as given, or the highest version inside a model directory."""
    p = Path(path)
    if (p / "saved_model.pb").is_file():
        return p
    versions = existing_versions(p)
    if versions:
        return p / str(versions[-1])
    raise NotFoundError(f"{p} is neither a SavedModel version directory nor holds numbered versions")


def check_export(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``tlkit export --check``: verify any tlkit export (no Keras model needed)."""
    return verify_export(resolve_export_dir(path), **kwargs)
