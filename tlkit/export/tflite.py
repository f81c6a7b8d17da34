"""TFLite beside the SavedModel: float32, float16, dynamic-range int8 and full-integer int8 models of
``predict_pixels`` (:mod:`tlkit.export.quantize`), the sample their check runs on, and top-1 per file
on the run's validation images (:mod:`tlkit.export.tflite_accuracy`), each with image-classifier
metadata (:mod:`tlkit.export.tflite_metadata`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.export.probes import probe_images, synthetic_pixels
from tlkit.export.serving_decode import decode_images
from tlkit.export.tflite_accuracy import DEFAULT_MAX_ACCURACY_DROP
from tlkit.export.tflite_metadata import metadata_for
from tlkit.export.verify import (
    LABELS_FILE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    TFLITE_DIR,
    TFLITE_VARIANTS,
    VerificationError,
)

TFLITE_VALIDATION_IMAGES = 256  # validation images in the TFLite agreement check (all of them up to this many)
ACCURACY_IMAGES = 1000  # validation images top-1 is measured on per TFLite file (evenly spaced beyond this)
ACCURACY_BYTES = 640 << 20  # ...and fewer for large inputs: their float32 pixels held at once (1000 at 224x224)
ACCURACY_MIN_IMAGES = 64  # ...but never fewer than this many (if the split has them)


@dataclass
class TFLiteData:
    """The images the TFLite step calibrates and measures on, and what it does with a costly quantisation.

    ``validation`` (float32 [N, H, W, 3]) with ``validation_labels`` (label ids) gives top-1 per
    file; without labels (``--base``) the images only join the agreement check, as
    ``sample_kind``. ``calibration`` is model_int8.tflite's calibration sample (None: the
    synthetic crops and the probes). A quantised file losing more than ``max_accuracy_drop``
    points against float32 is a warning, or with ``strict`` an :class:`AccuracyDropError`.
    """

    validation: np.ndarray | None = None
    validation_labels: np.ndarray | None = None
    validation_source: str | None = None
    sample_kind: str = "validation"
    calibration: np.ndarray | None = None
    calibration_source: str | None = None
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    strict: bool = False


class AccuracyDropError(VerificationError):
    """``--strict``: a quantised TFLite file loses more top-1 than ``--max-accuracy-drop`` allows."""


def save_tflite(
    model: Any, export_dir: str | Path, *, size: tuple[int, int], calibration: np.ndarray | None = None
) -> dict[str, Any]:
    """``export_dir/tflite/``: the models of :data:`TFLITE_VARIANTS` and a copy of labels.txt.

    TFLite has no image decoders and limited string support, so its one signature is
    ``predict_pixels``: ``pixels`` [B, H, W, 3] RGB 0..255 (float32; uint8 in model_int8.tflite)
    -> ``scores`` [B, classes] (uint8 in model_int8.tflite): one image input, one scores output,
    the layout MediaPipe's ImageClassifier takes (it and apps compute their own top-k). With the
    ``deploy`` extra each model embeds image-classifier metadata (labels, normalisation, RGB);
    names are also in labels.txt (line i = class i). ``calibration`` (float32 pixels) sets
    model_int8.tflite's activation ranges (:mod:`tlkit.export.quantize`; default: synthetic photo crops).
    """
    from tlkit._quiet_tf import captured_stderr
    from tlkit.export.quantize import VARIANT_DESCRIPTIONS, configure

    if calibration is None:
        calibration = synthetic_pixels(size)
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
            configure(converter, variant, calibration)
            path = d / f"model_{variant}.tflite"
            with captured_stderr():  # the converter's C++ notes ("fully_quantize: 0, ..."); replayed if it fails
                model_bytes = converter.convert()
            path.write_bytes(embed_metadata(model_bytes))
            files[variant] = {
                "file": f"{TFLITE_DIR}/{path.name}",
                "bytes": path.stat().st_size,
                "what": VARIANT_DESCRIPTIONS[variant],
            }
    return {
        "signature": PIXELS_SIGNATURE,
        "inputs": {PIXELS_INPUT: ["float32", [-1, h, w, 3]]},
        "outputs": {"scores": ["float32", [-1, int(model.output_shape[-1])]]},
        "labels": f"{TFLITE_DIR}/{LABELS_FILE}",
        "metadata": metadata,
        "models": files,
        "int8_io": _int8_io(d / "model_int8.tflite"),
    }


def _int8_io(path: Path) -> dict[str, Any]:
    """model_int8.tflite's input and scores tensors: dtype, scale and zero point (what an app quantises with)."""
    from tlkit.export.tflite_accuracy import SCORES_OUTPUT, tflite_runner

    runner = tflite_runner(path, PIXELS_SIGNATURE)
    io = {
        PIXELS_INPUT: runner.get_input_details()[PIXELS_INPUT],
        SCORES_OUTPUT: runner.get_output_details()[SCORES_OUTPUT],
    }
    return {
        k: {
            "dtype": np.dtype(v["dtype"]).name,
            "scale": float(v["quantization"][0]),
            "zero_point": int(v["quantization"][1]),
        }
        for k, v in io.items()
    }


def add_tflite(
    model: Any,
    export_dir: Path,
    *,
    size: tuple[int, int],
    top_k: int,
    resize: str,
    data: TFLiteData,
    verify: bool,
    probes: Sequence[bytes] | None,
    tolerance: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Convert, check and measure the TFLite files (the model card's ``tflite`` section).

    With ``verify``: the agreement check (:func:`verify_tflite`), top-1 per file on labelled
    validation images (``accuracy``), and the threshold: ``accuracy_warning`` holds one line
    when a quantised file loses more than ``data.max_accuracy_drop`` points against float32
    (top-1; without labels, its disagreement with the Keras model, an upper bound on what it
    loses); ``data.strict`` raises :class:`AccuracyDropError` instead.
    """
    from tlkit.export.tflite_accuracy import accuracy_drops, accuracy_report, agreement_line, drop_line
    from tlkit.export.verify_tflite import verify_tflite

    labelled = data.validation_labels is not None and data.validation is not None and len(data.validation) > 0
    check_pixels, sample = tflite_check_pixels(
        size,
        resize,
        probes,
        None if data.validation is None else data.validation[:TFLITE_VALIDATION_IMAGES],
        data.validation_source,
        kind=data.sample_kind,
    )
    calibration, calibration_source = data.calibration, data.calibration_source
    if calibration is None or not len(calibration):
        calibration = check_pixels[-(sample["synthetic"] + sample["probes"]) :]
        calibration_source = f"synthetic photo crops ({sample['synthetic']}) and the probes ({sample['probes']})"
    say("converting to TFLite (float32, float16, dynamic-range int8, full-integer int8)")
    card = save_tflite(model, export_dir, size=size, calibration=calibration)
    card["int8_calibration"] = {"images": len(calibration) + 1, "source": calibration_source, "range_image": True}
    if not verify:
        return card
    say(f"checking the TFLite models on {len(check_pixels)} images")
    card["verification"] = verify_tflite(export_dir, model, check_pixels, tolerance=tolerance, sample=sample)
    card["accuracy"], drops = None, {}
    if labelled:
        say(f"measuring top-1 of each TFLite file on {len(data.validation)} validation images")
        files = {v: m["file"].split("/")[-1] for v, m in card["models"].items()}
        acc = accuracy_report(
            Path(export_dir) / TFLITE_DIR,
            files,
            model,
            data.validation,
            data.validation_labels,
            split="val",
        )
        acc["source"] = data.validation_source
        card["accuracy"] = acc
        drops = accuracy_drops(acc, data.max_accuracy_drop)
        line = drop_line(acc, drops, data.max_accuracy_drop) if drops else None
    else:
        card["accuracy_unmeasured"] = (
            "no labelled images (a --base export, or the run's validation images are unreadable): "
            "see verification's top1_agreement with the Keras model"
        )
        check = card["verification"]
        agreement = {"images": check["images"], "float32": 1.0}
        agreement.update({v: check[v]["top1_agreement"] for v in TFLITE_VARIANTS if v != "float32"})
        drops = accuracy_drops(agreement, data.max_accuracy_drop)
        kinds = ("validation", "calibration_data", "synthetic", "probes")
        sample_text = ", ".join(f"{sample[k]} {k.replace('_', ' ')}" for k in kinds if sample.get(k))
        line = agreement_line(agreement, drops, data.max_accuracy_drop, sample_text) if drops else None
    card["max_accuracy_drop"] = data.max_accuracy_drop
    card["accuracy_warning"] = line
    if line and data.strict:
        raise AccuracyDropError(f"{line}; --strict refuses it (raise --max-accuracy-drop, or export without --strict)")
    return card


def tflite_check_pixels(
    size: tuple[int, int],
    resize: str,
    probes: Sequence[bytes] | None = None,
    validation: np.ndarray | None = None,
    validation_source: str | None = None,
    *,
    kind: str = "validation",
) -> tuple[np.ndarray, dict[str, Any]]:
    """The TFLite check's sample: validation (or, as ``kind``, other) images if any, synthetic crops,
    the probes (last); and its description."""
    probe_pixels = decode_images(tf.constant(list(probes) if probes else probe_images()), size, resize).numpy()
    parts = [synthetic_pixels(size), probe_pixels]
    sample: dict[str, Any] = {"synthetic": len(parts[0]), "probes": len(probe_pixels)}
    if validation is not None and len(validation):
        parts.insert(0, np.asarray(validation, np.float32))
        sample = {kind: len(validation), f"{kind}_source": validation_source, **sample}
    pixels = np.concatenate(parts)
    sample["images"] = len(pixels)
    return pixels, sample


def validation_pixels(
    config: dict[str, Any], size: tuple[int, int], say: Callable[[str], None], limit: int = ACCURACY_IMAGES
) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Up to ``limit`` of the run's validation images (evenly spaced; fewer, down to
    :data:`ACCURACY_MIN_IMAGES`, where their float32 pixels would pass :data:`ACCURACY_BYTES`),
    resized as its evaluation fed them, with their label ids and a description: (pixels, labels, source).

    For the TFLite accuracy and check only: when the data is gone or unreadable, the check uses
    its synthetic images and the probes, and says so (the export does not fail for it).
    """
    from tlkit.errors import TlkitError
    from tlkit.export.quantize import split_pixels

    if not config.get("data"):
        return None, None, None
    limit = min(limit, max(ACCURACY_MIN_IMAGES, ACCURACY_BYTES // (size[0] * size[1] * 3 * 4)))
    try:
        return split_pixels(config, "val", size, limit)
    except LookupError:
        return None, None, None
    except (TlkitError, OSError, tf.errors.OpError) as exc:
        say(
            f"the run's validation images cannot be read ({str(exc).splitlines()[0][:200]}); the TFLite check "
            "uses synthetic images only and measures no accuracy"
        )
        return None, None, None


TFLITE_OPTIONS = ("max_accuracy_drop", "strict", "calibration_data")  # export_run/export_base keywords


def tflite_data(
    kwargs: dict[str, Any], *, size: tuple[int, int], resize: str, config: dict[str, Any] | None = None
) -> TFLiteData | None:
    """Pop the TFLite options (:data:`TFLITE_OPTIONS`) from an export's ``kwargs`` and gather its images.

    A run (``config``): calibration on its training images (:func:`~tlkit.export.quantize.calibration_pixels`),
    top-1 on its validation images (:func:`validation_pixels`). A base: calibration on
    ``calibration_data`` (a folder) if given, which then also joins the agreement check (no labels),
    else on the synthetic crops and the probes. ``calibration_data`` overrides a run's training images.
    None when ``kwargs["formats"]`` has no ``"tflite"``.
    """
    from tlkit.export.quantize import calibration_pixels, folder_pixels

    opts = {k: kwargs.pop(k) for k in TFLITE_OPTIONS if k in kwargs}
    if "tflite" not in kwargs.get("formats", ()):
        return None
    say = kwargs.get("progress") or (lambda _: None)
    data = TFLiteData(strict=bool(opts.get("strict")))
    if opts.get("max_accuracy_drop") is not None:
        data.max_accuracy_drop = float(opts["max_accuracy_drop"])
    folder = opts.get("calibration_data")
    if folder:
        say(f"reading calibration images from {folder}")
        data.calibration, data.calibration_source = folder_pixels(folder, size, resize)
    if config is not None:
        if kwargs.get("verify", True):
            data.validation, data.validation_labels, data.validation_source = validation_pixels(config, size, say)
        if not folder:
            say("reading calibration images (the run's training split)")
            data.calibration, data.calibration_source = calibration_pixels(config, size, say)
    elif folder:
        data.validation, data.validation_source = data.calibration, data.calibration_source
        data.sample_kind = "calibration_data"
    return data
