"""Scoring a segmentation run: ``metrics.json`` and pictures at the end of training, and
``tlkit segment evaluate``.

A split is scored at the run's input size (images resized bilinearly, masks by nearest neighbour,
:func:`tlkit.segment.dataset.make_segmentation_dataset` without augmentation), by one confusion
matrix over all its pixels (:class:`tlkit.segment.metrics.StreamingScores`): pixel accuracy, mean
IoU, per-class IoU and the IoU in a band of 3 pixels around the true boundaries. Label 255 is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlkit.errors import ConfigError, NotFoundError
from tlkit.finetune import recorder
from tlkit.finetune import rundir as rd
from tlkit.finetune.rundir import RunDir

BOUNDARY_WIDTH = 3
EXAMPLES = "examples.png"
EXAMPLE_ROWS = 4


def load_segment_run(run_dir: str | Path) -> tuple[RunDir, dict, list[str]]:
    """(run, config, classes) of a segmentation run; another folder is a one-line error."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise NotFoundError(f"{run.path} does not exist; pass a run directory made by tlkit segment finetune")
    cfg = run.read_config()
    if cfg.get("task") != "segmentation":
        what = "a classification run (use tlkit evaluate/predict/export)" if run.is_run() else "not a tlkit run"
        raise ConfigError(f"{run.path} is {what}; pass a run directory made by tlkit segment finetune")
    classes = run.read_labels()
    if not isinstance(classes, list) or not classes:
        raise NotFoundError(f"{run.path / rd.LABELS} is missing; the run has no class names")
    return run, cfg, classes


def score_split(
    model: Any, pairs: list, classes: list[str], size: tuple[int, int], batch_size: int, keep: int = 0
) -> tuple[dict, list]:
    """(scores, up to ``keep`` example rows (image uint8, truth, prediction)) of ``pairs``."""
    import numpy as np

    from tlkit.segment.dataset import make_segmentation_dataset
    from tlkit.segment.metrics import StreamingScores

    ds = make_segmentation_dataset(pairs, size=tuple(size), batch_size=batch_size, training=False)
    stream = StreamingScores(len(classes), classes, boundary_width=BOUNDARY_WIDTH)
    rows: list = []
    for images, masks in ds:
        logits = np.asarray(model.predict_on_batch(images))
        truth = masks.numpy()
        stream.update(truth, logits)
        pred = logits.argmax(-1)
        for i in range(min(len(truth), keep - len(rows))):
            rows.append((np.clip(images[i].numpy(), 0, 255).astype("uint8"), truth[i], pred[i]))
    return stream.result(), rows


def split_pairs(source: Any, split: str) -> list:
    pairs = list(getattr(source, split))
    if not pairs:
        raise ConfigError(f"the run's data has no {split} pairs; pass --split with one it has (train, val or test)")
    return pairs


def finish(run: RunDir, source: Any, classes: list[str], size: tuple, cfg: Any, log: Any) -> dict:
    """The finished run's best checkpoint (else last) scored on val (and test when there is one):
    ``metrics.json`` (val's scores at the top, ``test`` beside them), ``curves.png``, ``confusion.png``
    (val) and ``examples.png`` (photo | truth | prediction of the first val images)."""
    import numpy as np

    from tlkit import plots
    from tlkit.segment import pictures

    history = recorder.read_history(run / rd.HISTORY)
    if history:
        plots.training_curves(history, run / rd.CURVES, title=f"{cfg.base} {cfg.head} on {cfg.data}")
    ckpt = run.require_checkpoint()
    model = run.load_checkpoint(ckpt)
    split = "val" if source.val else "train"
    metrics, rows = score_split(model, getattr(source, split), classes, size, cfg.batch_size, keep=EXAMPLE_ROWS)
    metrics = {"split": split, **metrics, "checkpoint": ckpt.name, "epochs_run": len(history)}
    if source.test:
        metrics["test"], _ = score_split(model, source.test, classes, size, cfg.batch_size)
    run.write_json(rd.METRICS, metrics)
    about = f"{cfg.base} {cfg.head}, {ckpt.name}, {split}"
    pictures.confusion_png(np.asarray(metrics["confusion"]), classes, run / rd.CONFUSION, title=about)
    if rows:
        pictures.examples_png(rows, classes, run / EXAMPLES)
    line = f"{split} mean IoU {_num(metrics['mean_iou'])}, pixel accuracy {_num(metrics['pixel_accuracy'])}"
    if "test" in metrics:
        line += f"; test mean IoU {_num(metrics['test']['mean_iou'])}"
    log(f"{line} ({ckpt.name}); run: {run.path}")
    return metrics


def evaluate_run(run_dir: str | Path, split: str = "val") -> dict:
    """``tlkit segment evaluate``: the run's checkpoint scored on ``split`` of its data (writes nothing)."""
    run, cfg, classes = load_segment_run(run_dir)
    from tlkit.segment.sources import find_pairs

    source = find_pairs(cfg["data"], val_split=cfg.get("val_split", 0.2), seed=cfg.get("seed", 0))
    pairs = split_pairs(source, split)
    if list(source.classes) != classes:
        raise ConfigError(f"{cfg['data']} now has classes {source.classes}, the run was trained on {classes}")
    ckpt = run.require_checkpoint()
    model = run.load_checkpoint(ckpt)
    scores, _ = score_split(model, pairs, classes, tuple(cfg["input_size"]), int(cfg.get("batch_size", 8)))
    return {"split": split, **scores, "checkpoint": ckpt.name}


def report_text(result: dict) -> str:
    """What ``tlkit segment evaluate`` prints: the split's scores and the per-class IoU table."""
    lines = [
        f"{result['split']} ({result.get('checkpoint', '')}): pixel accuracy {_num(result['pixel_accuracy'])}, "
        f"mean IoU {_num(result['mean_iou'])}",
    ]
    boundary = result.get("boundary") or {}
    if "mean_iou" in boundary:
        lines.append(
            f"boundary ({boundary.get('width', BOUNDARY_WIDTH)} px band): mean IoU {_num(boundary['mean_iou'])}, "
            f"pixel accuracy {_num(boundary.get('pixel_accuracy'))}"
        )
    per = result.get("per_class") or {}
    if per:
        width = max(len(str(c)) for c in per)
        lines.append(f"{'class':<{width}}  IoU     pixels")
        for name, s in per.items():
            lines.append(f"{name:<{width}}  {_num(s.get('iou')):<6}  {s.get('pixels', '')}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    """A score with 4 decimals; ``-`` for None (nothing to score: a class in neither truth nor prediction)."""
    return "-" if value is None else f"{value:.4f}"
