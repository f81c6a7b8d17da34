"""Multi-label finetuning: a sigmoid head trained with binary cross-entropy, per-class thresholds.

A multi-label source (:attr:`tlkit.data.sources.DataSource.multi_label`: a CSV with a ``labels``
column, or ``--multi-label`` folders) gives multi-hot float32 labels ``[B, C]``. The model's
``predictions`` layer then ends in a sigmoid (:func:`tlkit.finetune.heads.build_classifier`), and
:func:`is_multi_label` reads that off any model, fresh or loaded from a checkpoint: compiling,
the LR range test, the cached-features head and the multi-worker loop all follow it.

Training logs ``f1`` (micro F1 at 0.5) and ``pr_auc`` (the mean over classes of the area under
the precision-recall curve); the run keeps the checkpoint with the highest ``val_pr_auc``
(``pr_auc`` without validation). At the end (:func:`finish`) one threshold per class is chosen on
the validation predictions to maximise that class's F1 (:mod:`tlkit.multilabel_metrics`) and
stored as ``thresholds.json`` (``{class: threshold}``, in class order); ``metrics.json`` holds
per-class and macro/micro AP and F1 at those thresholds and the exact-match ratio, on val (and on
test when the data has one), and ``per_class.png`` draws per-class AP and F1 (no confusion matrix:
it means nothing when an image has several labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.finetune import rundir as rd
from tlkit.finetune.run_files import DamagedFileError

THRESHOLDS, PER_CLASS = rd.THRESHOLDS, rd.PER_CLASS
MONITOR = "pr_auc"  # what picks best.keras (val_pr_auc with validation)


def is_multi_label(model: Any) -> bool:
    """Whether ``model``'s ``predictions`` layer ends in a sigmoid (a multi-label head)."""
    try:
        layer = model.get_layer("predictions")
    except ValueError:
        return False
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") == "sigmoid"


def compile_args() -> tuple[str, list[Any]]:
    """(loss, metrics) for a multi-label model: binary cross-entropy; micro F1 at 0.5 and PR AUC."""
    import keras

    return "binary_crossentropy", [
        keras.metrics.F1Score(average="micro", threshold=0.5, name="f1"),
        keras.metrics.AUC(curve="PR", multi_label=True, name="pr_auc"),
    ]


def write_thresholds(run_dir: Path, classes: Sequence[str], thresholds: Sequence[float]) -> Path:
    from tlkit._io import write_json_atomic

    return write_json_atomic(Path(run_dir) / THRESHOLDS, {str(c): float(t) for c, t in zip(classes, thresholds)})


def read_thresholds(run_dir: str | Path, classes: Sequence[str]) -> list[float]:
    """The run's thresholds in class order; a missing or damaged file names itself and the fix."""
    from tlkit.finetune import run_files

    path = Path(run_dir) / THRESHOLDS
    fix = "finish the run (tlkit finetune --resume), or restore the file from a copy"
    if not path.is_file():
        raise DamagedFileError(f"{path} is missing: this multi-label run has no thresholds", fix)
    data = run_files.load_json(path, fix)
    if not isinstance(data, dict) or list(data) != [str(c) for c in classes]:
        raise DamagedFileError(f"{path} does not name the run's classes {list(classes)} in order", fix)
    try:
        return [float(data[str(c)]) for c in classes]
    except (TypeError, ValueError):
        raise DamagedFileError(f"{path} holds a threshold that is not a number", fix) from None


def split_scores(model: Any, source: Any, split: str, size: tuple, batch_size: int, **kw: Any) -> tuple:
    """(multi-hot labels [N, C], sigmoid scores [N, C]) of ``split``."""
    from tlkit import evaluate
    from tlkit.data import pipeline as tldata

    ds = tldata.make_dataset(
        source, split, image_size=size, batch_size=batch_size, training=False, channels=model.input_shape[-1], **kw
    )
    y, scores = evaluate.predict_dataset(model, ds)
    return np.asarray(y, dtype=np.float32), np.asarray(scores, dtype=np.float32)


def finish(run: Any, source: Any, classes: list[str], size: tuple, cfg: Any, log: Any) -> dict[str, Any]:
    """Thresholds on validation, then metrics.json, thresholds.json and per_class.png (see the module doc)."""
    from tlkit import multilabel_metrics as mm
    from tlkit.data import pipeline as tldata
    from tlkit.finetune import recorder

    run_dir = run.path
    history = recorder.read_history(run_dir / rd.HISTORY)
    ckpt = run.require_checkpoint()
    model = run.load_checkpoint(ckpt)
    split = "val" if tldata.dataset_size(source, "val") > 0 else "train"
    kw = {"skip_undecodable": bool(cfg.check_sample)}
    y, scores = split_scores(model, source, split, size, cfg.batch_size, **kw)
    thresholds, notes = mm.choose_thresholds(y, scores, classes)
    for note in notes:
        log(note)
    if split != "val":
        log("no validation split: thresholds chosen on the training images (they will be optimistic)")
    write_thresholds(run_dir, classes, thresholds)
    metrics = mm.multilabel_metrics(y, scores, classes, thresholds)
    metrics.update({"split": split, "checkpoint": ckpt.name, "epochs_run": len(history), "threshold_split": split})
    if tldata.dataset_size(source, "test") > 0:
        ty, tscores = split_scores(model, source, "test", size, cfg.batch_size, **kw)
        metrics["test"] = mm.multilabel_metrics(ty, tscores, classes, thresholds)
    run.write_json(rd.METRICS, metrics)
    per_class_plot(metrics, run_dir / PER_CLASS, about=f"{cfg.base} on {cfg.data}, {ckpt.name}")
    log(
        f"{split} macro AP {metrics['macro_ap'] or 0:.4f}, micro AP {metrics['micro_ap'] or 0:.4f}, micro F1 "
        f"{metrics['micro_f1']:.4f}, exact match {metrics['exact_match']:.4f} ({ckpt.name}); thresholds: {THRESHOLDS}"
    )
    return metrics


def per_class_plot(metrics: dict[str, Any], path: str | Path, *, about: str = "") -> Path:
    """Bars of each class's AP and F1 (at its threshold); the title states the macro/micro figures."""
    from tlkit import plots

    plt = plots._pyplot()
    names = list(metrics["per_class"])
    ap = [metrics["per_class"][c]["ap"] or 0.0 for c in names]
    f1 = [metrics["per_class"][c]["f1"] for c in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(min(3 + 0.5 * len(names), 16), 4), layout="constrained")
    ax.bar(x - 0.2, ap, 0.4, label="average precision")
    ax.bar(x + 0.2, f1, 0.4, label="F1 at its threshold")
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")

    def fig_(key: str) -> str:
        v = metrics.get(key)
        return "-" if v is None else f"{v:.4f}"

    title = "\n".join(
        t
        for t in (
            about,
            f"macro AP {fig_('macro_ap')}, micro AP {fig_('micro_ap')}, micro F1 {fig_('micro_f1')} "
            f"({metrics.get('split', '')} split, {metrics['count']} images)",
        )
        if t
    )
    ax.set_title(title, fontsize=9)
    return plots._save(fig, path, title)
