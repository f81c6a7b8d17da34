"""The TFLite check: each exported ``.tflite`` model run on a sample and compared with the Keras model.

float32 must match the Keras model within the tolerance; float16 and the int8 files are
measured here, not refused: top-1 agreement and score differences go into the model card (their
top-1 on labelled images, and the threshold, are :mod:`tlkit.export.tflite_accuracy`).
The SavedModel's own check in a fresh process is :mod:`tlkit.export.verify`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlkit.export.tflite_accuracy import run_tflite, tflite_interpreter
from tlkit.export.tflite_metadata import embedded_label_problems
from tlkit.export.verify import (
    LABELS_FILE,
    TFLITE_DIR,
    TFLITE_VARIANTS,
    TOLERANCE,
    VerificationError,
)


def _tflite_interpreter(path: Path) -> Any:
    """LiteRT's interpreter where the deploy extra is installed, else tf.lite.Interpreter (one chooser:
    :func:`tlkit.export.tflite_accuracy.tflite_interpreter`)."""
    return tflite_interpreter(path)


def verify_tflite(
    export_dir: str | Path,
    model: Any,
    pixels: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run each .tflite model on every image of ``pixels`` and compare with the Keras model.

    float32 must match within ``tolerance`` (else :class:`VerificationError`); the others are
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
        got = run_tflite(d / f"model_{variant}.tflite", pixels)  # full-integer: quantised in, dequantised out
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
