"""TFLite beside the SavedModel: float32 and dynamic-range int8 models of ``predict_pixels`` with
image-classifier metadata (:mod:`tlkit.export.tflite_metadata`), and the sample their check runs on."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.export.probes import probe_images, synthetic_pixels
from tlkit.export.serving_decode import decode_images
from tlkit.export.tflite_metadata import metadata_for
from tlkit.export.verify import (
    LABELS_FILE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    TFLITE_DIR,
    TFLITE_VARIANTS,
)

TFLITE_VALIDATION_IMAGES = 256  # validation images in the TFLite check (all of them up to this many)


def save_tflite(model: Any, export_dir: str | Path, *, size: tuple[int, int]) -> dict[str, Any]:
    """``export_dir/tflite/``: float32 and int8 (dynamic-range) models and a copy of labels.txt.

    TFLite has no image decoders and limited string support, so its one signature is
    ``predict_pixels``: ``pixels`` float32 [B, H, W, 3] RGB 0..255 -> ``scores`` [B, classes]
    (one image input, one scores output: the layout MediaPipe's ImageClassifier takes; it and
    apps compute their own top-k). With the ``deploy`` extra each model embeds image-classifier
    metadata (labels, normalisation, RGB); names are also in labels.txt (line i = class i).
    """
    d = Path(export_dir) / TFLITE_DIR
    d.mkdir()
    shutil.copyfile(Path(export_dir) / "assets" / LABELS_FILE, d / LABELS_FILE)
    h, w = size
    embed_metadata, metadata = metadata_for((d / LABELS_FILE).read_text(encoding="utf-8").splitlines(), size)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=PIXELS_INPUT)])
    def predict_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": tf.cast(model(pixels, training=False), tf.float32)}

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
            path.write_bytes(embed_metadata(converter.convert()))
            files[variant] = {"file": f"{TFLITE_DIR}/{path.name}", "bytes": path.stat().st_size}
    return {
        "signature": PIXELS_SIGNATURE,
        "inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
        "outputs": {"scores": ["float32", [-1, int(model.output_shape[-1])]]},
        "labels": f"{TFLITE_DIR}/{LABELS_FILE}",
        "metadata": metadata,
        "models": files,
        "int8": "dynamic-range quantisation: int8 weights, float32 activations",
    }


def tflite_check_pixels(
    size: tuple[int, int],
    resize: str,
    probes: Sequence[bytes] | None = None,
    validation: np.ndarray | None = None,
    validation_source: str | None = None,
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


def validation_pixels(
    config: dict[str, Any], size: tuple[int, int], say: Callable[[str], None], limit: int = TFLITE_VALIDATION_IMAGES
) -> tuple[np.ndarray | None, str | None]:
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
        source = tldata.resolve(
            spec,
            val_split=config.get("val_split", 0.2),
            seed=config.get("seed", 0),
            tfds_data_dir=config.get("tfds_data_dir"),
            min_classes=1,
        )
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
        say(
            f"the run's validation images cannot be read ({str(exc).splitlines()[0][:200]}); the TFLite check "
            "uses synthetic images only"
        )
        return None, None
    return pixels, f"{spec} ({split}, first {len(pixels)})"
