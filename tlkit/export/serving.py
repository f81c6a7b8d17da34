"""The serving module: a Keras classifier, its labels and both signatures as one ``tf.Module``.

``serving_default`` decodes and resizes ``image_bytes`` in the graph
(:func:`tlkit.export.serving_decode.decode_images`, resizing with :mod:`tlkit.data.resize`);
``predict_pixels`` takes float32 RGB 0..255 pixels at the model's size. The model carries its
preprocessing, so both feed it raw pixels. Loading needs neither Keras nor tlkit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.data.images import MAX_PIXELS
from tlkit.errors import ConfigError, ExportError
from tlkit.export.serving_decode import BYTES_INPUT, RESIZE_MODES, decode_images
from tlkit.export.verify import LABELS_FILE, PIXELS_INPUT, PIXELS_SIGNATURE

SERVING_SIGNATURE = "serving_default"
OUTPUT_KEYS = ("scores", "top_k_ids", "top_k_labels", "top_k_scores")
# A multi-label run's export adds these (tlkit.finetune.multilabel): the label at or above its class's threshold.
MULTI_LABEL_KEYS = ("above_threshold", "labels_above_threshold")
DEFAULT_TOP_K = 5


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

    def __init__(
        self,
        model: Any,
        labels_path: str,
        *,
        size: tuple[int, int],
        top_k: int,
        resize: str,
        max_pixels: int = MAX_PIXELS,
        thresholds: Sequence[float] | None = None,
    ) -> None:
        super().__init__(name="tlkit_serving")
        # Multi-label: one threshold per class; the outputs add MULTI_LABEL_KEYS.
        self.thresholds = None if thresholds is None else tf.constant(np.asarray(thresholds, np.float32))
        self.size = size
        self.top_k = top_k
        self.resize = resize
        self.max_pixels = int(max_pixels)
        # The Keras model object is not tracked, so loading needs neither Keras nor tlkit; its
        # variables are tracked after tracing (see signatures()).
        self._model = _Untracked(model)
        # A string path becomes a tf.saved_model.Asset: copied into assets/ and re-pointed on load.
        initializer = tf.lookup.TextFileInitializer(
            labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE
        )
        self.labels = tf.lookup.StaticHashTable(initializer, default_value="")
        h, w = size
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
        )
        self.serve_pixels = tf.function(
            self._serve_pixels, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)]
        )

    def _outputs(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.cast(self._model.obj(pixels, training=False), tf.float32)
        top_scores, top_ids = tf.math.top_k(scores, k=self.top_k)
        out = {
            "scores": scores,
            "top_k_ids": top_ids,
            "top_k_labels": self.labels.lookup(tf.cast(top_ids, tf.int64)),
            "top_k_scores": top_scores,
        }
        if self.thresholds is not None:
            above = scores >= self.thresholds[None, :]
            names = self.labels.lookup(tf.range(tf.shape(self.thresholds, out_type=tf.int64)[0]))
            out["above_threshold"] = above
            out["labels_above_threshold"] = tf.where(above, tf.broadcast_to(names[None, :], tf.shape(above)), "")
        return out

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(decode_images(image_bytes, self.size, self.resize, self.max_pixels))

    def _serve_pixels(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(pixels)

    def signatures(self) -> dict[str, Any]:
        """Trace both signatures and track the tf.Variables they capture."""
        return traced_signatures(self)


def traced_signatures(module: tf.Module) -> dict[str, Any]:
    """``serving_default`` and ``predict_pixels`` of a module with ``serve_bytes`` / ``serve_pixels``
    tf.functions, traced; the tf.Variables they capture become ``module.model_variables``.

    The captured tf.Variables themselves are tracked, not the Keras wrappers around them: with the
    wrappers, TF2 loading works but TF1-style loading (saved_model_cli run, older TF Serving paths)
    restores no values ("Could not find variable ...").
    """
    fns = {
        SERVING_SIGNATURE: module.serve_bytes.get_concrete_function(),
        PIXELS_SIGNATURE: module.serve_pixels.get_concrete_function(),
    }
    seen: dict[int, Any] = {}
    for fn in fns.values():
        for v in fn.variables:
            seen.setdefault(id(v), v)
    module.model_variables = list(seen.values())
    return fns


class _Untracked:
    """Hides an object from tf.Module's attribute tracking (see ServingModule)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def save_serving_model(
    model: Any,
    labels: Sequence[str],
    path: str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    resize: str = "crop",
    input_size: Sequence[int] | None = None,
    max_pixels: int = MAX_PIXELS,
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Write the SavedModel (no card, no verification) to ``path``; returns its facts.

    ``thresholds`` (a multi-label run's, one per class) add ``above_threshold`` (bool [B, C]:
    score >= threshold) and ``labels_above_threshold`` (string [B, C]: the class name there, ``""``
    elsewhere) to both signatures."""
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
    if thresholds is not None and len(thresholds) != len(labels):
        raise ExportError(f"{len(thresholds)} thresholds for {len(labels)} classes")
    with tempfile.TemporaryDirectory(prefix="tlkit-labels-") as scratch:
        labels_path = os.path.join(scratch, LABELS_FILE)
        with open(labels_path, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(c + "\n" for c in labels))
        module = ServingModule(
            model, labels_path, size=size, top_k=k, resize=resize, max_pixels=max_pixels, thresholds=thresholds
        )
        tf.saved_model.save(module, str(path), signatures=module.signatures())
    return {
        "input_size": list(size),
        "top_k": k,
        "resize": resize,
        "num_classes": len(labels),
        "max_pixels": max_pixels,
        "thresholds": None if thresholds is None else [float(np.float32(t)) for t in thresholds],
    }


def check_max_pixels(max_pixels: int) -> int:
    """The pixel limit as an int >= 1 (the graph compares with it as a float64)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ConfigError(f"max_pixels (--max-pixels) must be a whole number >= 1, got {max_pixels!r}")
    return int(max_pixels)


def _output_spec(c: int, k: int, multi_label: bool = False) -> dict[str, list]:
    spec = {
        "scores": ["float32", [-1, c]],
        "top_k_ids": ["int32", [-1, k]],
        "top_k_labels": ["string", [-1, k]],
        "top_k_scores": ["float32", [-1, k]],
    }
    if multi_label:
        spec.update({"above_threshold": ["bool", [-1, c]], "labels_above_threshold": ["string", [-1, c]]})
    return spec
