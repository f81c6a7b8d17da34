"""Running an exported ``.tflite`` file as an app would, and what quantisation costs in accuracy.

A full-integer model takes uint8 pixels and gives uint8 scores: :func:`run_tflite` quantises the
float 0..255 pixels with the input tensor's scale and zero point and dequantises ``scores`` with
the output's, so every variant is compared on the same float scores. :func:`accuracy_report` is
top-1 on labelled images (the run's validation split) per file and for the Keras model;
:func:`accuracy_drops` names the files that lose more than a threshold against float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SCORES_OUTPUT = "scores"  # the one output every variant has (MediaPipe reads a single scores tensor)
DEFAULT_MAX_ACCURACY_DROP = 2.0  # percentage points of top-1 a quantised file may lose against float32


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float values to ``dtype`` (uint8/int8) as TFLite defines it: round(x / scale) + zero_point, clipped."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantised values back to float32: (q - zero_point) * scale."""
    return ((np.asarray(q, np.float64) - zero_point) * scale).astype(np.float32)


def _quantized(details: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero_point) of an integer tensor, None for a float one."""
    if not np.issubdtype(np.dtype(details["dtype"]), np.integer):
        return None
    scale, zero = details["quantization"]
    return (float(scale), int(zero)) if scale else None


def tflite_interpreter(path: str | Path) -> Any:
    """LiteRT's interpreter (ai_edge_litert, the deploy extra), the maintained successor of
    tf.lite.Interpreter, which is the fallback without it (its deprecation notice silenced)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about moving to ai_edge_litert
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def tflite_runner(path: str | Path, signature: str = "predict_pixels") -> Any:
    """The signature runner of a ``.tflite`` file (:func:`tflite_interpreter`)."""
    return tflite_interpreter(path).get_signature_runner(signature)


def run_tflite(path: str | Path, pixels: np.ndarray, *, batch: int = 32, input_name: str = "pixels") -> np.ndarray:
    """float32 ``scores`` [N, C] of a ``.tflite`` file on float ``pixels`` [N, H, W, 3] (0..255),
    quantising the input and dequantising ``scores`` where the file is full-integer."""
    runner = tflite_runner(path)
    inp = runner.get_input_details()[input_name]
    out = runner.get_output_details()[SCORES_OUTPUT]
    qin, qout = _quantized(inp), _quantized(out)
    results = []
    for i in range(0, len(pixels), batch):
        x = np.asarray(pixels[i : i + batch], np.float32)
        x = quantize(x, *qin, np.dtype(inp["dtype"])) if qin else x.astype(inp["dtype"])
        y = runner(**{input_name: x})[SCORES_OUTPUT]
        results.append(dequantize(y, *qout) if qout else np.asarray(y, np.float32))
    return np.concatenate(results)


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``scores`` [N, C] against label ids [N] (ties: the lowest id, as argmax)."""
    labels = np.asarray(labels)
    if not len(labels):
        raise ValueError("top-1 of no images")
    return float((np.asarray(scores).argmax(axis=1) == labels).mean())


def keras_scores(model: Any, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    """The Keras model's float32 scores on ``pixels``, in batches."""
    return np.concatenate(
        [np.asarray(model(pixels[i : i + batch], training=False), np.float32) for i in range(0, len(pixels), batch)]
    )


def accuracy_report(
    tflite_dir: str | Path,
    files: dict[str, str],
    model: Any,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    split: str,
) -> dict[str, Any]:
    """Top-1 (a fraction) on labelled ``pixels`` of the Keras ``model`` and of each file
    (``files``: variant -> file name in ``tflite_dir``), with the images' count and where they came from."""
    report: dict[str, Any] = {"split": split, "images": len(labels), "keras": top1(keras_scores(model, pixels), labels)}
    for variant, name in files.items():
        report[variant] = top1(run_tflite(Path(tflite_dir) / name, pixels), labels)
    return report


def accuracy_drops(
    accuracy: dict[str, Any], max_drop: float, variants: Sequence[str] = ("float16", "dynamic_int8", "int8")
) -> dict[str, float]:
    """Variant -> top-1 lost against float32, in percentage points, for each that loses more than ``max_drop``."""
    base = 100 * accuracy["float32"]
    drops = {v: base - 100 * accuracy[v] for v in variants if v in accuracy}
    return {v: d for v, d in drops.items() if d > max_drop + 1e-9}


def drop_line(accuracy: dict[str, Any], drops: dict[str, float], max_drop: float) -> str:
    """One line naming each file past the threshold with its figures."""
    parts = ", ".join(f"model_{v}.tflite {100 * accuracy[v]:.1f}% (-{d:.1f} points)" for v, d in sorted(drops.items()))
    return (
        f"quantisation costs more than {max_drop:g} points of top-1 on {accuracy['images']} {accuracy['split']} "
        f"images against model_float32.tflite's {100 * accuracy['float32']:.1f}%: {parts}"
    )


def agreement_line(agreement: dict[str, Any], drops: dict[str, float], max_drop: float, sample: str) -> str:
    """One line for an export without labels: the files whose top class differs from the float model's
    on more than ``max_drop`` % of the check images (an upper bound on the top-1 they cost)."""
    parts = ", ".join(f"model_{v}.tflite on {d:.1f}%" for v, d in sorted(drops.items()))
    return (
        f"quantisation changes the top class on more than {max_drop:g}% of {agreement['images']} check images "
        f"({sample}; no labels, so this bounds the top-1 it costs): {parts}"
    )
