"""TFLite variants and the images their full-integer quantisation is calibrated on.

Four files per export (``tlkit export --format tflite``):

* ``model_float32.tflite``: the float model, scores within the export tolerance of Keras;
* ``model_float16.tflite``: float16 weights (half the size), float32 computation on most CPUs;
* ``model_dynamic_int8.tflite``: dynamic-range quantisation, int8 weights and float32 activations;
* ``model_int8.tflite``: full-integer quantisation, int8 ops throughout with uint8 ``pixels`` in
  (raw RGB 0..255, scale about 1, zero point 0) and uint8 ``scores`` out (scale 1/256): what
  MediaPipe, the Edge TPU and microcontrollers mean by "int8". Its activation ranges come from a
  calibration sample (:func:`calibration_pixels`, :func:`folder_pixels`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_IMAGES = 200  # calibration images for model_int8.tflite (all of them up to this many)

# Variant -> what the model card says the file is.
VARIANT_DESCRIPTIONS = {
    "float32": "float32 weights and computation",
    "float16": "float16 weights (half the size), float32 computation where the hardware has no float16",
    "dynamic_int8": "dynamic-range quantisation: int8 weights, float32 activations, float32 pixels in and scores out",
    "int8": "full-integer quantisation: int8 ops, uint8 pixels in (RGB 0..255) and uint8 scores out "
    "(dequantise with the tensors' scale and zero point); activation ranges calibrated on a sample",
}


def evenly_spaced(n: int, limit: int) -> np.ndarray:
    """``min(n, limit)`` indices spread evenly over ``range(n)`` (deterministic, all when n <= limit).

    File splits list images class by class: the first ``limit`` would see only the first classes.
    """
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def split_pixels(
    config: dict[str, Any], split: str, size: tuple[int, int], limit: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Up to ``limit`` images of a run's ``split`` with their label ids, through the run's own pixel
    path (:func:`tlkit.data.pipeline.make_dataset`, ``training=False``: decoded and resized as
    evaluation feeds them, no augmentation). Files: evenly spaced over the split; TFDS: the first.

    Raises :class:`tlkit.errors.TlkitError`, ``OSError`` or ``tf.errors.OpError`` when the data is
    gone or unreadable, and ``LookupError`` when the run has no such split.
    """
    from tlkit.data import pipeline as tldata

    spec = config.get("data")
    if not spec:
        raise LookupError("the run's config names no data")
    source = tldata.resolve(
        spec,
        val_split=config.get("val_split", 0.2),
        seed=config.get("seed", 0),
        tfds_data_dir=config.get("tfds_data_dir"),
        min_classes=1,
        multi_label=bool(config.get("multi_label", False)),
    )
    n = tldata.dataset_size(source, split)
    if n == 0:
        raise LookupError(f"{spec} has no {split} split")
    how = "all" if n <= limit else f"first {limit}"
    if source.kind == "files" and n > limit:
        items = source.items[source.items["split"] == split]
        source = dataclasses.replace(source, items=items.iloc[evenly_spaced(len(items), limit)])
        how = f"{limit} evenly spaced of {n}"
    ds = tldata.make_dataset(source, split, image_size=size, batch_size=32, training=False)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
        if sum(len(b) for b in xs) >= limit:
            break
    pixels, labels = np.concatenate(xs)[:limit], np.concatenate(ys)[:limit].astype(np.int64)
    return pixels, labels, f"{spec} ({split}, {how}: {len(pixels)} images)"


def calibration_pixels(
    config: dict[str, Any], size: tuple[int, int], say: Callable[[str], None], limit: int = CALIBRATION_IMAGES
) -> tuple[np.ndarray | None, str | None]:
    """Up to ``limit`` of the run's *training* images for the full-integer calibration (evenly
    spaced, unaugmented, as evaluation resizes them); ``(None, None)`` and a line said when the
    data cannot be read (the calibration then uses synthetic photo crops)."""
    import tensorflow as tf

    from tlkit.errors import TlkitError

    try:
        pixels, _, where = split_pixels(config, "train", size, limit)
    except (TlkitError, OSError, LookupError, tf.errors.OpError) as exc:
        say(
            f"the run's training images cannot be read ({str(exc).splitlines()[0][:200]}); model_int8.tflite "
            "is calibrated on synthetic photo crops instead"
        )
        return None, None
    return pixels, f"the run's training images: {where}"


def folder_pixels(
    folder: str | Path, size: tuple[int, int], resize: str, limit: int = CALIBRATION_IMAGES
) -> tuple[np.ndarray, str]:
    """Up to ``limit`` images of ``folder`` (recursively, sorted by path, evenly spaced), decoded
    (EXIF-upright) and resized with ``resize`` as the serving graph does (``--calibration-data``)."""
    from tlkit.data.images import is_image_path, load_rgb
    from tlkit.data.resize import resize_numpy
    from tlkit.errors import DataError, NotFoundError

    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError(f"--calibration-data {folder} is not a folder (give a folder of images)")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_path(p))
    if not paths:
        raise DataError(f"--calibration-data {folder} holds no images (JPEG, PNG, BMP, GIF, WebP)")
    chosen = [paths[i] for i in evenly_spaced(len(paths), limit)]
    try:
        pixels = np.stack([resize_numpy(load_rgb(p), size, resize) for p in chosen]).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"--calibration-data: {str(exc).splitlines()[0][:200]}; remove or fix that file") from None
    return pixels, f"--calibration-data {folder} ({len(pixels)} of {len(paths)} images, evenly spaced)"


def range_image(size: tuple[int, int]) -> np.ndarray:
    """One [1, H, W, 3] image with pixels 0 and 255: calibration always sees the whole input range,
    so the uint8 input's scale is 1 and its zero point 0 (raw pixels go in unchanged)."""
    img = np.zeros((1, *size, 3), np.float32)
    img[:, :, : size[1] // 2] = 255.0
    return img


def representative_dataset(pixels: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's ``representative_dataset``: the range image, then each calibration image, one at a time."""
    size = tuple(pixels.shape[1:3])

    def gen() -> Iterator[list[np.ndarray]]:
        yield [range_image(size)]
        for i in range(len(pixels)):
            yield [pixels[i : i + 1].astype(np.float32)]

    return gen


def configure(converter: Any, variant: str, calibration: np.ndarray | None = None) -> Any:
    """Set ``converter``'s options for ``variant`` (a key of :data:`VARIANT_DESCRIPTIONS`); returns it."""
    import tensorflow as tf

    if variant == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("full-integer int8 needs calibration images")
        converter.representative_dataset = representative_dataset(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif variant != "dynamic_int8":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    return converter
