"""``tlkit predict RUN_DIR IMAGE...``: a finetuned run's answer for image files.

A multi-label run (sigmoid head, :mod:`tlkit.finetune.multilabel`) answers every label whose score
is at or above the threshold the run stored in ``thresholds.json`` (none: an empty list, printed
``(none)``), with every class's score; a single-label run answers its top-K classes. Images are
read as ``tlkit predict`` reads them (header checked, EXIF orientation) and resized with
``resize`` (default ``plain``: the whole image, as the run's validation images were).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlkit.data.images import MAX_PIXELS


def is_run_dir(path: str) -> bool:
    """Whether ``path`` is a finetuning run directory (labels and a checkpoint), not an image."""
    p = Path(path)
    return p.is_dir() and any((p / n).is_file() for n in ("labels.json", "labels.txt"))


def predict_run_files(
    run_dir: str,
    paths: list[str],
    *,
    top: int = 5,
    batch_size: int = 16,
    resize: str = "plain",
    max_pixels: int = MAX_PIXELS,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    """(facts about the run, results, errors), in input order. A multi-label result is
    ``{"image", "labels": [{"label", "score", "threshold"}] (highest score first), "scores": {class: score}}``;
    a single-label one ``{"image", "predictions": [{"rank", "index", "name", "prob"}]}``."""
    import numpy as np

    from tlkit.cli.commands.predict import prepare_image
    from tlkit.data.images import ImageError, load_rgb
    from tlkit.finetune.evaluation_runs import load_run
    from tlkit.finetune.multilabel import is_multi_label, read_thresholds

    model, labels, _ = load_run(run_dir)
    multi = is_multi_label(model)
    thresholds = read_thresholds(run_dir, labels) if multi else None
    size = tuple(int(v) for v in model.input_shape[1:3])
    ready, errors = [], []
    for path in paths:
        try:
            ready.append((path, prepare_image(load_rgb(path, max_pixels=max_pixels), size, resize)))
        except ImageError as exc:
            errors.append({"image": path, "reason": exc.reason, "error": str(exc)})
    results: list[dict[str, Any]] = []
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        scores = np.asarray(model.predict_on_batch(np.stack([a for _, a in chunk])), dtype=np.float32)
        for (path, _), row in zip(chunk, scores):
            if multi:
                above = [i for i in np.argsort(-row, kind="stable") if row[i] >= np.float32(thresholds[i])]
                results.append(
                    {
                        "image": path,
                        "labels": [
                            {"label": labels[i], "score": float(row[i]), "threshold": thresholds[i]} for i in above
                        ],
                        "scores": {c: float(v) for c, v in zip(labels, row)},
                    }
                )
            else:
                order = np.argsort(-row, kind="stable")[: min(top, len(labels))]
                results.append(
                    {
                        "image": path,
                        "predictions": [
                            {"rank": r + 1, "index": int(i), "name": labels[i], "prob": float(row[i])}
                            for r, i in enumerate(order)
                        ],
                    }
                )
    facts = {"run": str(run_dir), "multi_label": multi, "classes": labels, "thresholds": thresholds}
    return facts, results, errors


def table_rows(facts: dict[str, Any], results: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple]]:
    """(header, rows) of the printed table."""
    if facts["multi_label"]:
        rows = []
        for r in results:
            rows += [(r["image"], p["label"], f"{p['score']:.4f}", f"{p['threshold']:.4g}") for p in r["labels"]] or [
                (r["image"], "(none)", "", "")
            ]
        return ("image", "label", "score", "threshold"), rows
    rows = [(r["image"], str(p["rank"]), p["name"], f"{p['prob']:.4f}") for r in results for p in r["predictions"]]
    return ("image", "rank", "class", "prob"), rows
