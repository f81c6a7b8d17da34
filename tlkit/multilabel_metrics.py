"""Multi-label figures from per-class scores: thresholds chosen for F1, average precision, F1, exact match.

numpy and scikit-learn only (no Keras, no TensorFlow). A label is predicted for an image when its
score is **at or above** its class's threshold (``score >= threshold``), everywhere in tlkit: the run's
metrics, ``tlkit evaluate``, ``tlkit predict`` and the exported SavedModel's ``above_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a class without a validation positive: no F1 to maximise


def _check(y_true: Any, scores: Any, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 2 or s.shape != y.shape or (n is not None and s.shape[1] != n):
        raise ValueError(f"labels {y.shape} and scores {s.shape} must both be (N, C={n})")
    return (y > 0.5).astype(np.int64), s


def best_f1_threshold(y_true: Any, scores: Any) -> tuple[float, float] | None:
    """(threshold, F1) of one class: the threshold among its observed scores whose rule
    ``score >= threshold`` gives the highest F1; on a tie, the higher threshold. None when the
    class has no positive (no F1 to maximise)."""
    y = (np.asarray(y_true) > 0.5).astype(np.int64).ravel()
    s = np.asarray(scores).ravel()
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    # Threshold s_sorted[i] predicts every score >= it: the end of each run of equal scores.
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp, fp = tp[ends], fp[ends]
    f1 = 2 * tp / (2 * tp + fp + (positives - tp))
    best = int(np.argmax(f1))  # first maximum in descending score order: the highest threshold
    return float(s_sorted[ends[best]]), float(f1[best])


def choose_thresholds(y_true: Any, scores: Any, classes: Sequence[str]) -> tuple[list[float], list[str]]:
    """One threshold per class maximising that class's F1 on (validation) ``y_true``/``scores``
    (see :func:`best_f1_threshold`); a class with no positive gets :data:`DEFAULT_THRESHOLD`.
    Returns (thresholds in class order, notes: one line per class that got the default)."""
    y, s = _check(y_true, scores, len(classes))
    thresholds, notes = [], []
    for i, name in enumerate(classes):
        found = best_f1_threshold(y[:, i], s[:, i])
        if found is None:
            thresholds.append(DEFAULT_THRESHOLD)
            notes.append(f"class {name!r} has no positive image to choose a threshold on: it gets {DEFAULT_THRESHOLD}")
        else:
            thresholds.append(found[0])
    return thresholds, notes


def predicted(scores: Any, thresholds: Sequence[float]) -> np.ndarray:
    """The bool mask [N, C] of labels at or above their threshold."""
    s = np.asarray(scores)
    return s >= np.asarray(thresholds, dtype=s.dtype if s.dtype.kind == "f" else np.float64)[None, :]


def _f1(tp: float, fp: float, fn: float) -> float:
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def multilabel_metrics(y_true: Any, scores: Any, classes: Sequence[str], thresholds: Sequence[float]) -> dict[str, Any]:
    """Per-class AP, precision, recall, F1 (at ``thresholds``), support; macro and micro AP and F1;
    exact match (every label of an image right). Macro figures average the classes with a positive
    (AP is undefined without one: such a class has ``ap`` None); micro figures pool every
    (image, class) pair."""
    from sklearn.metrics import average_precision_score

    y, s = _check(y_true, scores, len(classes))
    pred = predicted(s, thresholds)
    per_class, aps, f1s = {}, [], []
    for i, name in enumerate(classes):
        support = int(y[:, i].sum())
        tp = float((pred[:, i] & (y[:, i] == 1)).sum())
        fp = float((pred[:, i] & (y[:, i] == 0)).sum())
        fn = float(support - tp)
        ap = float(average_precision_score(y[:, i], s[:, i])) if support else None
        f1 = _f1(tp, fp, fn)
        per_class[str(name)] = {
            "ap": ap,
            "f1": f1,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / support if support else 0.0,
            "support": support,
            "predicted": int(tp + fp),
            "threshold": float(thresholds[i]),
        }
        if support:
            aps.append(ap)
            f1s.append(f1)
    tp = float((pred & (y == 1)).sum())
    fp = float((pred & (y == 0)).sum())
    fn = float(y.sum() - tp)
    has_pos = bool(y.sum())
    return {
        "multi_label": True,
        "count": int(len(y)),
        "classes": [str(c) for c in classes],
        "per_class": per_class,
        "macro_ap": float(np.mean(aps)) if aps else None,
        "micro_ap": float(average_precision_score(y.ravel(), s.ravel())) if has_pos else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "micro_f1": _f1(tp, fp, fn),
        "exact_match": float((pred == (y == 1)).all(axis=1).mean()) if len(y) else float("nan"),
        "thresholds": [float(t) for t in thresholds],
    }


def labels_above(scores: Any, thresholds: Sequence[float], classes: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per image, the (label, score) pairs at or above their threshold, highest score first."""
    s = np.asarray(scores)
    mask = predicted(s, thresholds)
    out = []
    for row, m in zip(s, mask):
        picked = [(str(classes[i]), float(row[i])) for i in np.flatnonzero(m)]
        out.append(sorted(picked, key=lambda p: -p[1]))
    return out


def table(metrics: dict[str, Any]) -> list[str]:
    """The per-class lines and the macro/micro line ``tlkit evaluate`` prints."""
    rows = [("class", "AP", "F1", "precision", "recall", "support", "threshold")]
    for name, v in metrics["per_class"].items():
        ap = "-" if v["ap"] is None else f"{v['ap']:.4f}"
        rows.append(
            (name, ap, f"{v['f1']:.4f}", f"{v['precision']:.4f}", f"{v['recall']:.4f}", str(v["support"]),
             f"{v['threshold']:.4g}")
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]

    def fig(key: str) -> str:
        v = metrics.get(key)
        return "-" if v is None else f"{v:.4f}"

    lines.append(
        f"macro AP {fig('macro_ap')}, micro AP {fig('micro_ap')}, macro F1 {fig('macro_f1')}, "
        f"micro F1 {fig('micro_f1')}, exact match {fig('exact_match')}"
    )
    return lines
