"""``tlkit segment predict``: per photo a palette mask PNG and an overlay PNG with a legend.

Each photo is decoded upright (EXIF orientation applied, :func:`tlkit.data.images.load_rgb`),
resized whole to the run's input size (:func:`tlkit.data.resize.plain`, as validation images and
the export's graph), and the model's logits are resized back to the photo's own size before the
argmax (:func:`tlkit.segment.serving.outputs_at`, the export's function): the mask has the photo's
height and width. Written to OUT: ``STEM_mask.png`` (palette PNG, pixel value = class index,
:func:`tlkit.segment.masks.write_mask`) and ``STEM_overlay.png`` (the mask blended over the photo
beside a legend of the classes present, :func:`tlkit.segment.pictures.overlay_png`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MASK_SUFFIX, OVERLAY_SUFFIX = "_mask.png", "_overlay.png"


def output_names(images: Sequence[str | Path]) -> list[str]:
    """One stem per image, unique within the call (``a.jpg`` and ``x/a.png`` -> ``a``, ``a-2``)."""
    seen: dict[str, int] = {}
    names = []
    for p in images:
        stem = Path(p).stem or "image"
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        names.append(stem if count == 1 else f"{stem}-{count}")
    return names


def class_fractions(mask: Any, classes: Sequence[str]) -> dict[str, float]:
    """The share of the mask's pixels per class present, largest first."""
    import numpy as np

    counts = np.bincount(np.asarray(mask).ravel(), minlength=len(classes))
    total = max(int(counts.sum()), 1)
    order = np.argsort(-counts, kind="stable")
    return {str(classes[i]): round(float(counts[i]) / total, 4) for i in order if counts[i] and i < len(classes)}


def predict_images(
    run_dir: str | Path, images: Sequence[str | Path], out: str | Path, *, say: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Masks and overlays of ``images`` in ``out``; returns per image its files, size and class shares."""
    import numpy as np

    from tlkit.data import resize as rs
    from tlkit.data.images import load_rgb
    from tlkit.segment.evaluate import load_segment_run
    from tlkit.segment.masks import write_mask
    from tlkit.segment.pictures import overlay_png
    from tlkit.segment.serving import outputs_at

    run, config, classes = load_segment_run(run_dir)
    photos = [load_rgb(p) for p in images]  # every photo decodes before anything is written
    ckpt = run.require_checkpoint()
    model = run.load_checkpoint(ckpt)
    size = tuple(int(v) for v in config["input_size"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path, photo, stem in zip(images, photos, output_names(images), strict=True):
        pixels = np.asarray(rs.plain(photo, size))[None]
        logits = np.asarray(model.predict_on_batch(pixels))
        mask = outputs_at(logits, photo.shape[:2])["mask"].numpy()[0]
        mask_path, overlay_path = out / f"{stem}{MASK_SUFFIX}", out / f"{stem}{OVERLAY_SUFFIX}"
        write_mask(mask_path, mask, len(classes))
        overlay_png(photo, mask, classes, overlay_path, title=Path(path).name)
        row = {
            "image": str(path),
            "size": [int(photo.shape[0]), int(photo.shape[1])],
            "mask": str(mask_path),
            "overlay": str(overlay_path),
            "classes": class_fractions(mask, classes),
        }
        results.append(row)
        if say:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in row["classes"].items())
            say(f"{path}: {mask_path.name}, {overlay_path.name} ({shares})")
    return results
