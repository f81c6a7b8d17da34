"""The TFLite check: each exported ``.tflite`` model run on a sample and compared with the Keras model.

float32 must match the Keras model within the tolerance; int8 (dynamic-range quantised) is
measured, never refused: top-1 agreement and score differences go into the model card.
The SavedModel's own check in a fresh process is :mod:`tlkit.export.verify`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.export.tflite_metadata import embedded_label_problems
from tlkit.export.verify import (
    LABELS_FILE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    TFLITE_DIR,
    TFLITE_VARIANTS,
    TOLERANCE,
    VerificationError,
)


def _tflite_interpreter(path: Path) -> Any:
    """LiteRT's interpreter (ai_edge_litert, the deploy extra), the maintained successor of
    tf.lite.Interpreter, which is the fallback without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about moving to ai_edge_litert
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def _run_tflite(path: Path, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    runner = _tflite_interpreter(path).get_signature_runner(PIXELS_SIGNATURE)
    return np.concatenate(
        [
            runner(**{PIXELS_INPUT: pixels[i : i + batch].astype(np.float32)})["scores"]
            for i in range(0, len(pixels), batch)
        ]
    )


def verify_tflite(
    export_dir: str | Path,
    model: Any,
    pixels: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run each .tflite model on every image of ``pixels`` and compare with the Keras model.

    float32 must match within ``tolerance`` (else :class:`VerificationError`); int8 is
    measured: top-1 agreement with the Keras model (rate and count of disagreements) and
    the max and mean absolute score difference. ``sample`` describes where the images came from.
    """
    d = Path(export_dir) / TFLITE_DIR
    ref = np.concatenate(
        [np.asarray(model(pixels[i : i + 32], training=False), dtype=np.float32) for i in range(0, len(pixels), 32)]
    )
    report: dict[str, Any] = {"images": len(pixels), "sample": sample or {"images": len(pixels)}}
    problems = []
    for variant in TFLITE_VARIANTS:
        got = _run_tflite(d / f"model_{variant}.tflite", pixels)
        diff = np.abs(got - ref)
        agree = got.argmax(axis=1) == ref.argmax(axis=1)
        report[variant] = {
            "max_abs_diff_vs_keras": float(diff.max()),
            "mean_abs_diff_vs_keras": float(diff.mean()),
            "top1_agreement": float(agree.mean()),
            "top1_disagreements": int((~agree).sum()),
            "images": len(pixels),
        }
        if variant == "float32" and not diff.max() <= tolerance:
            problems.append(
                f"TFLite float32 scores differ from the Keras model's by {diff.max():.3g} (limit {tolerance:g})"
            )
    labels = (d / LABELS_FILE).read_text(encoding="utf-8")
    if labels != (Path(export_dir) / "assets" / LABELS_FILE).read_text(encoding="utf-8"):
        problems.append("tflite/labels.txt differs from the SavedModel's labels asset")
    problems += embedded_label_problems(d, labels.splitlines())
    if problems:
        raise VerificationError("TFLite verification failed:\n  - " + "\n  - ".join(problems))
    report["passed"] = True
    return report
