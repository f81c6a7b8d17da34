"""Metrics from predictions: top-1/top-5, per-class precision/recall, confusion matrix, TTA, ensembles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tlkit.errors import ConfigError


def metrics_from_probs(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Top-1 (and top-5 when there are more than 5 classes), per-class precision, recall,
    F1 and support, and the confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != n:
        raise ValueError(f"probabilities have shape {probs.shape}, expected (N, {n})")
    pred = probs.argmax(axis=1)
    labels = list(range(n))
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "count": int(len(y_true)),
        "top1": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "per_class": {
            str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, pred, labels=labels).tolist(),
        "classes": [str(c) for c in class_names],
    }
    if n > 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top5"] = float((top5 == y_true[:, None]).any(axis=1).mean())
    out["macro_recall"] = float(np.mean(r))
    return out


def predict_dataset(model: Any, dataset: Any, *, tta: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of (raw-pixel images, labels); returns (labels, probabilities).

    ``tta="flip"`` averages the image and its mirror; ``tta="crops"`` averages the 10
    standard crops (4 corners + centre, and their mirrors) of the image enlarged by 256/224.
    """
    ys, ps = [], []
    for x, y in dataset:
        x = np.asarray(x, dtype=np.float32)
        ps.append(_predict_tta(model, x, tta))
        ys.append(np.asarray(y))
    if not ys:
        raise ConfigError("the evaluation dataset is empty")
    return np.concatenate(ys), np.concatenate(ps)


def ten_crops(x: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """The 10 standard crops of a batch (B, H, W, C): 4 corners + centre, each also mirrored."""
    h, w = size
    H, W = x.shape[1:3]
    if H < h or W < w:
        raise ConfigError(f"crops of {h}x{w} need an image at least that large, got {H}x{W}")
    offsets = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]
    crops = [x[:, t : t + h, l : l + w] for t, l in offsets]
    return crops + [c[:, :, ::-1] for c in crops]


def _predict_tta(model: Any, x: np.ndarray, tta: str | None) -> np.ndarray:
    if tta in (None, "none"):
        return np.asarray(model.predict_on_batch(x))
    if tta == "flip":
        return (np.asarray(model.predict_on_batch(x)) + np.asarray(model.predict_on_batch(x[:, :, ::-1]))) / 2
    if tta == "crops":
        from tlkit.data.resize import resize_numpy

        h, w = x.shape[1:3]
        big = (round(h * 256 / 224), round(w * 256 / 224))
        # The one resize (tlkit.data.resize), image by image: the pixels every other path sees.
        enlarged = np.stack([resize_numpy(im, big, "plain") for im in x])
        crops = ten_crops(enlarged, (h, w))
        return np.mean([np.asarray(model.predict_on_batch(np.ascontiguousarray(c))) for c in crops], axis=0)
    raise ConfigError(f"unknown test-time augmentation {tta!r}; use flip or crops")


def ensemble(prob_sets: Iterable[np.ndarray]) -> np.ndarray:
    """Average the probabilities of several models (the seeds' "use ensembles")."""
    sets = [np.asarray(p, dtype=np.float64) for p in prob_sets]
    if not sets:
        raise ConfigError("an ensemble needs at least one model")
    shapes = {p.shape for p in sets}
    if len(shapes) != 1:
        raise ConfigError(f"ensemble members disagree on shape: {sorted(shapes)}")
    return np.mean(sets, axis=0)
