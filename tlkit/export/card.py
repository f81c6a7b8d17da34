"""The model card of an export, ``N/tlkit.json``: classes, input size, preprocessing, signatures,
limits, metrics, source and versions (what a client or an auditor reads without loading the graph)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

import tlkit
from tlkit.data.images import CROP_FRACTION
from tlkit.export.serving import SERVING_SIGNATURE, _output_spec
from tlkit.export.serving_decode import BYTES_INPUT
from tlkit.export.verify import LABELS_FILE, MODEL_CARD, PIXELS_INPUT, PIXELS_SIGNATURE


def make_card(labels: Sequence[str], facts: dict[str, Any], extra: dict[str, Any], *, version: int) -> dict:
    """The model card written as ``tlkit.json`` (``extra`` overrides and adds fields)."""
    import keras

    extra = dict(extra)
    h, w = facts["input_size"]
    thresholds = facts.get("thresholds")
    multi = thresholds is not None
    pre = {
        "mode": extra.pop("preprocessing_mode", None),
        "in_graph": True,
        "decode": "JPEG: tf.io.decode_jpeg(dct_method='INTEGER_ACCURATE'), turned upright by its EXIF "
        "orientation; WebP (first frame): tf.io.decode_webp; PNG, BMP, GIF (first frame): "
        "tf.io.decode_image; grayscale and RGBA become RGB; headers checked first; HEIC/HEIF and AVIF "
        "are refused (clients send JPEG, PNG, WebP, BMP or GIF) (tlkit.export.serving_decode)",
        "exif_orientation": True,
        "resize": facts["resize"],
        "crop_fraction": CROP_FRACTION if facts["resize"] == "crop" else None,
        "interpolation": "bilinear, antialiased, unrounded (tlkit.data.resize, as every tlkit command)",
        "model_input": f"float32 RGB 0..255, {h}x{w}",
    }
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
            SERVING_SIGNATURE: {
                "inputs": {BYTES_INPUT: ["string", [-1]]},
                "outputs": _output_spec(len(labels), facts["top_k"], multi),
            },
            PIXELS_SIGNATURE: {
                "inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
                "outputs": _output_spec(len(labels), facts["top_k"], multi),
            },
        },
        "labels_asset": f"assets/{LABELS_FILE}",
        "metrics": extra.pop("metrics", None),
        "source": extra.pop("source", None),
        "tlkit_version": tlkit.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if multi:  # a multi-label run (tlkit.finetune.multilabel): its thresholds, chosen on validation for F1
        card["multi_label"] = {
            "thresholds": {str(c): float(t) for c, t in zip(labels, thresholds)},
            "rule": "a label is predicted when its score >= its threshold",
            "outputs": "scores: sigmoid per class (independent, not summing to 1); above_threshold: bool [B, C]; "
            "labels_above_threshold: string [B, C], the class name where above_threshold, '' elsewhere",
        }
    card.update(extra)
    return card


def write_card(path: Path, card: dict[str, Any]) -> None:
    """``path/tlkit.json``: the card, indented, UTF-8."""
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
