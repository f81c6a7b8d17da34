"""``tlkit segment export``: a segmentation run as a SavedModel (image bytes in, mask and scores out).

Layout as ``tlkit export``'s (:mod:`tlkit.export.savedmodel`): ``OUT/N/`` (N the next free
version, or ``--version``) holding the SavedModel and the model card ``tlkit.json``; written to a
temporary folder under OUT's lock, checked, then renamed, so a failed or interrupted export leaves
no version and an existing one is never overwritten. The graph is :mod:`tlkit.segment.serving`.

The check after saving loads the SavedModel back (``tf.saved_model.load``, plain TensorFlow) and
runs both signatures on a probe photo of another size than the model's input (the run's first
validation image, else a synthetic one): ``mask`` must have the photo's size and equal the argmax
of the Keras model's logits resized to it, except where the model's two best classes are within
the tolerance (a tie a float rounding may break either way), and ``scores`` must agree within
:data:`TOLERANCE`. A mismatch is a :class:`~tlkit.export.verify.VerificationError` and no version
is written. TFLite and ONNX are refused for segmentation runs. Light at import (no TensorFlow).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tlkit
from tlkit.errors import ConfigError, TlkitError

TOLERANCE = 1e-4
MODEL_CARD = "tlkit.json"
FORMATS_REFUSED = "TFLite and ONNX exports of segmentation runs are not available; export the SavedModel alone"


def refuse_segmentation_run(run_dir: str | os.PathLike) -> None:
    """``tlkit export RUN`` on a segmentation run: one line pointing to ``tlkit segment export``."""
    cfg = Path(run_dir) / "config.json"
    try:
        task = json.loads(cfg.read_text(encoding="utf-8")).get("task") if cfg.is_file() else None
    except (OSError, ValueError, AttributeError):
        return  # a damaged config.json is named by the export's own reading of the run
    if task == "segmentation":
        raise ConfigError(
            f"{run_dir} is a segmentation run: export it with `tlkit segment export {run_dir}` "
            f"(mask and per-class scores out)"
        )


def _probe(config: dict) -> tuple[bytes, Any]:
    """(PNG bytes, uint8 image) of the run's first validation photo, else a seeded synthetic one.

    Resized to 1.5x the model's width (and 0.75x its height) when it has the model's size, so the
    check resizes both ways."""
    import numpy as np
    from PIL import Image

    h, w = (int(v) for v in config["input_size"])
    image = None
    try:
        from tlkit.data.images import load_rgb
        from tlkit.segment.sources import find_pairs

        source = find_pairs(config["data"], val_split=config.get("val_split", 0.2), seed=config.get("seed", 0))
        pairs = source.val or source.train
        image = load_rgb(pairs[0][0]) if pairs else None
    except (TlkitError, OSError, IndexError):  # the data may be gone or changed: the probe is then synthetic
        image = None
    if image is None:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if image.shape[:2] == (h, w):
        image = np.asarray(Image.fromarray(image).resize((w * 3 // 2, max(8, h * 3 // 4)), Image.BILINEAR))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), image


def verify_segment_export(path: str | Path, model: Any, probe: bytes) -> dict[str, Any]:
    """Load the SavedModel at ``path`` back and compare it with ``model`` on ``probe``; see the module doc."""
    import numpy as np
    import tensorflow as tf

    from tlkit.export.serving_decode import decode_images
    from tlkit.export.verify import PIXELS_SIGNATURE, VerificationError
    from tlkit.segment.serving import RESIZE, SERVING_SIGNATURE, outputs_at

    card = json.loads((Path(path) / MODEL_CARD).read_text(encoding="utf-8"))
    size = tuple(card["input_size"])
    loaded = tf.saved_model.load(str(path))
    got = {k: v.numpy() for k, v in loaded.signatures[SERVING_SIGNATURE](image_bytes=tf.constant([probe])).items()}
    pixels = decode_images(tf.constant([probe]), size, RESIZE, card["max_pixels"])
    own = tf.shape(tf.io.decode_image(probe, channels=3, expand_animations=False))[:2]
    logits = np.asarray(model.predict_on_batch(pixels.numpy()))
    want = {k: v.numpy() for k, v in outputs_at(logits, own).items()}
    on_pixels = loaded.signatures[PIXELS_SIGNATURE](pixels=pixels)
    problems = []
    if got["mask"].shape != want["mask"].shape or got["mask"].dtype != np.uint8:
        problems.append(f"mask is {got['mask'].dtype} {got['mask'].shape}, expected uint8 {want['mask'].shape}")
    else:
        top2 = np.sort(want["scores"], axis=-1)[..., -2:] if want["scores"].shape[-1] > 1 else None
        tie = (top2[..., 1] - top2[..., 0] <= TOLERANCE) if top2 is not None else np.zeros_like(got["mask"], bool)
        wrong = int(np.sum((got["mask"] != want["mask"]) & ~tie))
        if wrong:
            problems.append(f"mask differs from the Keras model's argmax at {wrong} pixel(s)")
        diff = float(np.max(np.abs(got["scores"] - want["scores"])))
        if not diff <= TOLERANCE:
            problems.append(f"scores differ from the Keras model's by up to {diff:.3g}")
    diff_px = float(np.max(np.abs(on_pixels["scores"].numpy() - outputs_at(logits, size)["scores"].numpy())))
    if not diff_px <= TOLERANCE:
        problems.append(f"{PIXELS_SIGNATURE}'s scores differ from the Keras model's by up to {diff_px:.3g}")
    if problems:
        raise VerificationError(f"the SavedModel at {path} does not match the run's model: " + "; ".join(problems))
    return {"probe_size": [int(v) for v in want["mask"].shape[1:]], "checks": "mask and scores match", "ok": True}


def export_segment_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    version: int | None = None,
    formats: tuple[str, ...] = ("saved_model",),
    max_pixels: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Export the run's best checkpoint (else last) to ``out/N``; returns that version's path."""
    say = progress or (lambda _m: None)
    if set(formats) - {"saved_model"}:
        raise ConfigError(FORMATS_REFUSED)
    from tlkit._io import move_into_place
    from tlkit._lock import output_lock
    from tlkit.data.images import MAX_PIXELS
    from tlkit.export.versions import (
        check_target,
        clean_stale_temp_dirs,
        default_out,
        refuse_existing,
        resolve_version,
        tmp_name,
    )
    from tlkit.segment.evaluate import load_segment_run

    run, config, classes = load_segment_run(run_dir)
    ckpt = run.require_checkpoint()
    out = check_target(Path(out) if out else default_out(run_dir=run.path), version).resolve()
    limit = int(max_pixels or MAX_PIXELS)
    say(f"loading {ckpt}")
    model = run.load_checkpoint(ckpt)
    import tensorflow as tf

    from tlkit.segment.serving import SERVING_SIGNATURE, SegmentServing

    with output_lock(out, inside=True):
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_temp_dirs(out)
        n = resolve_version(out, version)
        target = out / str(n)
        refuse_existing(target, out, explicit=version is not None)
        tmp = Path(tempfile.mkdtemp(prefix=tmp_name(n), dir=out))
        try:
            say(f"writing the SavedModel (version {n})")
            module = SegmentServing(model, tuple(config["input_size"]), limit)
            tf.saved_model.save(module, str(tmp), signatures=module.signatures())
            card = {
                "task": "segmentation",
                "classes": classes,
                "num_classes": len(classes),
                "input_size": [int(v) for v in config["input_size"]],
                "max_pixels": limit,
                "base": config.get("base"),
                "head": config.get("head"),
                "output_stride": config.get("output_stride"),
                "signatures": {
                    SERVING_SIGNATURE: {"inputs": {"image_bytes": "string [B]"}, "outputs": _outputs(len(classes))},
                    "predict_pixels": {"inputs": {"pixels": "float32 [B, H, W, 3]"}, "outputs": _outputs(len(classes))},
                },
                "resize": "plain; logits resized back to the image's size (bilinear) before softmax and argmax",
                "metrics": run.read_json("metrics.json"),
                "source": {"run_dir": str(run.path.resolve()), "checkpoint": ckpt.name, "data": config.get("data")},
                "version": n,
                "tlkit_version": tlkit.__version__,
            }
            (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
            say("verifying: loading the SavedModel back and comparing it with the Keras model on a probe photo")
            probe, _ = _probe(config)
            card["verification"] = verify_segment_export(tmp, model, probe)
            (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
            refuse_existing(target, out, explicit=version is not None)
            os.chmod(tmp, 0o755)
            move_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say(f"done: {target}")
    return target


def _outputs(c: int) -> dict[str, str]:
    return {"mask": "uint8 [B, H, W]", "scores": f"float32 [B, H, W, {c}]"}
