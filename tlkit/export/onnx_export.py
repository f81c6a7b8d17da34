"""ONNX beside the SavedModel (``tlkit export --format onnx``): ``N/onnx/model.onnx`` and labels.txt,
checked in ONNX Runtime before the export appears.

The ONNX graph is the export's ``predict_pixels``: ``pixels`` float32 [batch, H, W, 3], RGB
0..255 at the model's input size, preprocessed inside (the Keras model carries its
:class:`~tlkit.models.preprocessing.Preprocess` layer) -> ``scores`` float32 [batch, C],
``top_k_ids`` int32 [batch, K], ``top_k_scores`` float32 [batch, K]. Image decoding and resizing
stay with the client, as for TFLite. It is converted by tf2onnx from the same pixels-only
``tf.function`` the TFLite models come from (Keras 3's own ``model.export(format="onnx")`` calls
tf2onnx too on this backend, but names the output ``Identity:0`` and has no top-k).

The check (:func:`verify_onnx`) loads the file in a fresh ``onnxruntime.InferenceSession`` and
runs it on the TFLite check's sample (the run's validation images, synthetic crops of photos, the
probes): its scores must be within the export's tolerance of the Keras model's, and its top-K ids
those of the SavedModel's ``predict_pixels`` on the photos (probes and crops); a difference is a
:class:`~tlkit.export.verify.VerificationError` and no version is written.

Importing this module does not import TensorFlow or ONNX: ``tlkit export --format onnx`` calls
:func:`require_onnx` before any work, and it only looks the packages up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.errors import ConfigError, ExportError

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
# Opset 17 (ONNX 1.12, 2022): what tf2onnx 1.17 converts to well and every ONNX Runtime since
# 1.13 (and most other runtimes) runs.
ONNX_OPSET = 17
ONNX_PACKAGES = ("onnxruntime", "tf2onnx", "onnx")  # import names, all in the deploy extra
DEPLOY_INSTALL = 'pip install "tlkit[deploy]"'
BATCH_DIM = "batch"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def missing_onnx_packages() -> list[str]:
    """The packages ``--format onnx`` needs that cannot be found (looked up, not imported)."""
    missing = []
    for name in ONNX_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install, or an import hook refusing it
            found = False
        if not found:
            missing.append(name)
    return missing


def require_onnx() -> None:
    """Refuse ``--format onnx`` at once, naming the extra, when its packages are not installed."""
    missing = missing_onnx_packages()
    if missing:
        raise ConfigError(f"--format onnx needs {' and '.join(missing)}, not installed here: {DEPLOY_INSTALL}")


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """tf2onnx logs every step at INFO, and its graph optimisation makes TensorFlow warn about a
    collection it cannot serialise (``table_initializer``, harmless): errors only, meanwhile."""
    import logging

    loggers = [logging.getLogger("tf2onnx"), logging.getLogger("tensorflow")]
    before = [lg.level for lg in loggers]
    for lg in loggers:  # not tf2onnx.logging.set_level: it also rewrites os.environ["TF_CPP_MIN_LOG_LEVEL"]
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def _inline_captured_constants(proto: Any, fn: Any) -> None:
    """Make the tensors the traced function captured (not variables) constants of the ONNX graph.

    tf2onnx freezes variables, but a tensor a layer computed once and kept (Keras 3's
    ``Normalization`` keeps its mean and variance so: EfficientNet-B0..B7) stays a graph input
    of the converted model (used or not), which ONNX Runtime then asks the caller to feed. Its
    value is known: it becomes an initializer (or goes, if no node reads it), and ``pixels`` the
    one input.
    """
    import tensorflow as tf
    from onnx import numpy_helper

    values = {
        inner.name: outer.numpy()
        for outer, inner in zip(fn.captured_inputs, fn.graph.internal_captures)
        if outer.dtype != tf.resource
    }
    used = _consumed(proto.graph)
    for value in list(proto.graph.input):
        if value.name in values:
            proto.graph.input.remove(value)
            if value.name in used:  # an unused one is only dropped (ONNX Runtime would warn about it)
                proto.graph.initializer.append(numpy_helper.from_array(values[value.name], value.name))


def _consumed(graph: Any) -> set[str]:
    """Every tensor name a node of ``graph`` (or of a subgraph in its attributes) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= _consumed(sub)
    return names


def save_onnx(model: Any, export_dir: str | Path, *, size: tuple[int, int], top_k: int) -> dict[str, Any]:
    """``export_dir/onnx/``: ``model.onnx`` (pixels in, scores and top-K out) and a copy of labels.txt.

    Returns the model card's ``onnx`` entry: file, bytes, opset, converter, inputs and outputs.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from tlkit.export.serving import _output_spec
    from tlkit.export.verify import LABELS_FILE, PIXELS_INPUT

    d = Path(export_dir) / ONNX_DIR
    d.mkdir()
    shutil.copyfile(Path(export_dir) / "assets" / LABELS_FILE, d / LABELS_FILE)
    h, w = size

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)])
    def predict_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.cast(model(pixels, training=False), tf.float32)
        top_scores, top_ids = tf.math.top_k(scores, k=top_k)
        return {"scores": scores, "top_k_ids": top_ids, "top_k_scores": top_scores}

    try:
        with _quiet_conversion():
            proto, _ = tf2onnx.convert.from_function(
                predict_pixels, input_signature=predict_pixels.input_signature, opset=ONNX_OPSET
            )
    except Exception as exc:  # tf2onnx raises many kinds (unsupported op, shape, freezing): one line for all
        raise ExportError(
            f"tf2onnx {tf2onnx.__version__} cannot convert this model to ONNX opset {ONNX_OPSET} "
            f"({type(exc).__name__}: {_first_line(exc)}); export it without --format onnx"
        ) from exc
    _inline_captured_constants(proto, predict_pixels.get_concrete_function())
    # tf2onnx names the unknown batch dimension unk__N, a different N on each tensor: one name
    # says they are the same dimension.
    for value in [*proto.graph.input, *proto.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = BATCH_DIM
    proto.doc_string = f"tlkit predict_pixels: {PIXELS_INPUT} float32 RGB 0..255 [batch, {h}, {w}, 3]; labels.txt"
    onnx.checker.check_model(proto)
    path = d / ONNX_FILE
    path.write_bytes(proto.SerializeToString())  # export_dir is the export's temporary folder: no partial file shows
    outputs = {k: v for k, v in _output_spec(int(model.output_shape[-1]), top_k).items() if k != "top_k_labels"}
    return {
        "file": f"{ONNX_DIR}/{ONNX_FILE}",
        "bytes": path.stat().st_size,
        "opset": ONNX_OPSET,
        "converter": f"tf2onnx {tf2onnx.__version__}",
        "inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
        "outputs": outputs,
        "labels": f"{ONNX_DIR}/{LABELS_FILE}",
    }


def run_onnx(path: str | Path, pixels: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """All outputs of an ONNX file for ``pixels`` (float32 [N, H, W, 3]), in a fresh CPU session."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    keys = [o.name for o in session.get_outputs()]
    parts = [session.run(keys, {name: pixels[i : i + batch].astype(np.float32)}) for i in range(0, len(pixels), batch)]
    return {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(keys)}


def _top_k_mismatches(got_ids: np.ndarray, ref_ids: np.ndarray, ref_scores: np.ndarray, tolerance: float) -> int:
    """Images whose top-K ids differ from the reference's (``ref_scores``: its full scores [N, C]);
    a swap of classes whose reference scores are within ``tolerance`` (a tie) is not a difference."""
    bad = 0
    for got, ids, scores in zip(got_ids, ref_ids, ref_scores):
        if not all(abs(scores[g] - scores[r]) <= tolerance for g, r in zip(got.tolist(), ids.tolist())):
            bad += 1
    return bad


def verify_onnx(
    export_dir: str | Path,
    model: Any,
    pixels: np.ndarray,
    *,
    photos: int,
    tolerance: float,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``onnx/model.onnx`` in ONNX Runtime on ``pixels``; compare with the Keras model and the SavedModel.

    Scores on every image must be within ``tolerance`` of the Keras model's; top-K ids on the
    last ``photos`` images (the probes and photo crops) must be those of the SavedModel's
    ``predict_pixels`` in ``export_dir``. Otherwise :class:`VerificationError`.
    """
    import onnxruntime as ort
    import tensorflow as tf

    from tlkit.export.verify import LABELS_FILE, PIXELS_INPUT, PIXELS_SIGNATURE, VerificationError

    d = Path(export_dir) / ONNX_DIR
    try:
        got = run_onnx(d / ONNX_FILE, pixels)
    except Exception as exc:  # onnxruntime's own exception types, ValueError for a missing input, ...
        raise VerificationError(
            f"ONNX verification failed: ONNX Runtime cannot run the converted model "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    ref = np.concatenate(
        [np.asarray(model(pixels[i : i + 32], training=False), np.float32) for i in range(0, len(pixels), 32)]
    )
    diff = np.abs(got["scores"] - ref)
    onnx_ids = got["top_k_ids"][len(pixels) - photos :]
    mismatches = identical = 0
    if photos:
        tail = tf.constant(pixels[len(pixels) - photos :])
        served = tf.saved_model.load(str(export_dir)).signatures[PIXELS_SIGNATURE]
        saved = [served(**{PIXELS_INPUT: tail[i : i + 32]}) for i in range(0, photos, 32)]
        saved_ids = np.concatenate([s["top_k_ids"].numpy() for s in saved])
        mismatches = _top_k_mismatches(
            onnx_ids, saved_ids, np.concatenate([s["scores"].numpy() for s in saved]), tolerance
        )
        identical = int((onnx_ids == saved_ids).all(axis=1).sum())
    k = int(onnx_ids.shape[1])
    report: dict[str, Any] = {
        "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
        "images": len(pixels),
        "sample": sample or {"images": len(pixels)},
        "max_abs_diff_vs_keras": float(diff.max()),
        "mean_abs_diff_vs_keras": float(diff.mean()),
        "top1_agreement_vs_keras": float((got["scores"].argmax(1) == ref.argmax(1)).mean()),
        "top_k_vs_saved_model": {
            "photos": int(photos),
            "identical": identical,  # the rest are swaps of classes tied within the tolerance
            "mismatches": mismatches,
            "k": k,
        },
        "tolerance": tolerance,
    }
    problems = []
    if not diff.max() <= tolerance:
        problems.append(f"ONNX Runtime scores differ from the Keras model's by {diff.max():.3g} (limit {tolerance:g})")
    if mismatches:
        problems.append(f"the ONNX model's top-{k} differs from the SavedModel's on {mismatches} photos")
    if (d / LABELS_FILE).read_text(encoding="utf-8") != (Path(export_dir) / "assets" / LABELS_FILE).read_text(
        encoding="utf-8"
    ):
        problems.append("onnx/labels.txt differs from the SavedModel's labels asset")
    if problems:
        raise VerificationError("ONNX verification failed:\n  - " + "\n  - ".join(problems))
    report["passed"] = True
    return report


def export_onnx(
    model: Any,
    export_dir: Path,
    *,
    size: tuple[int, int],
    top_k: int,
    resize: str,
    verify: bool,
    tolerance: float,
    probes: Sequence[bytes] | None = None,
    validation: np.ndarray | None = None,
    validation_source: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Write ``export_dir/onnx/`` and (with ``verify``) check it; returns the card's ``onnx`` entry."""
    from tlkit.export.tflite import tflite_check_pixels

    say(f"converting to ONNX (opset {ONNX_OPSET})")
    entry = save_onnx(model, export_dir, size=size, top_k=top_k)
    if verify:
        pixels, sample = tflite_check_pixels(size, resize, probes, validation, validation_source)
        photos = sample["synthetic"] + sample["probes"]  # the sample's last images
        say(f"checking the ONNX model in ONNX Runtime on {len(pixels)} images")
        entry["verification"] = verify_onnx(
            export_dir, model, pixels, photos=photos, tolerance=tolerance, sample=sample
        )
    return entry
