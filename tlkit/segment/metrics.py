"""Segmentation figures from a confusion matrix of pixels: pixel accuracy, mean accuracy, mean IoU,
frequency-weighted IoU (the four of Long et al. 2015, section 5), per-class IoU, and the same restricted to a
band along the truth's class boundaries (the "trimap" of Kohli et al. 2009 / DeepLab).

numpy only (no Keras, no TensorFlow). Exact: integer counts accumulated in int64, so scoring batch by
batch (:class:`StreamingScores`) gives the same figures as scoring everything at once. Truth label
:data:`IGNORE` (255) is never scored, anywhere. With ``n_ij`` the pixels of true class ``i`` predicted
``j``, ``t_i = sum_j n_ij`` (truth pixels of ``i``) and ``p_i = sum_j n_ji`` (pixels predicted ``i``):

* pixel accuracy ``sum_i n_ii / sum_i t_i``;
* IoU of class ``i``: ``n_ii / (t_i + p_i - n_ii)``, undefined (``None``) for a class absent from both
  truth and prediction; **mean IoU averages the classes present in truth or prediction** (absent ones
  are listed under ``absent``, not counted as 0 or 1); a class predicted but never true has IoU 0;
* accuracy of class ``i``: ``n_ii / t_i`` (``None`` without truth pixels); mean accuracy averages the
  classes present in the truth;
* frequency-weighted IoU ``sum_i t_i IoU_i / sum_i t_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IGNORE = 255
BOUNDARY_WIDTH = 3


def _labels(y_pred: Any, y_true: np.ndarray) -> np.ndarray:
    """Class indices from predicted indices (same shape as the truth) or scores/logits (one more, last, axis)."""
    p = np.asarray(y_pred)
    if p.ndim == y_true.ndim + 1:
        p = p.argmax(axis=-1)
    if p.shape != y_true.shape:
        raise ValueError(f"prediction {np.shape(y_pred)} does not match truth {y_true.shape} (nor truth + classes)")
    return p


def confusion(y_true: Any, y_pred: Any, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """int64 [C, C] pixel counts, rows = truth, columns = prediction; truth pixels equal to ``ignore`` are
    left out. ``y_pred`` holds class indices shaped like ``y_true``, or scores/logits with a last class
    axis (argmax taken). A truth value outside ``0..C-1`` (other than ``ignore``) or a predicted value
    outside ``0..C-1`` raises ``ValueError``."""
    t = np.asarray(y_true)
    p = _labels(y_pred, t).astype(np.int64).ravel()
    t = t.astype(np.int64).ravel()
    keep = t != ignore
    t, p = t[keep], p[keep]
    for what, v in (("truth", t), ("prediction", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            bad = v[(v < 0) | (v >= num_classes)][0]
            raise ValueError(f"{what} holds class {bad}, outside 0..{num_classes - 1} (and not ignore={ignore})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def scores(conf: Any, classes: Sequence[str]) -> dict[str, Any]:
    """The figures of a confusion matrix (see the module docstring). Keys: ``pixel_accuracy``,
    ``mean_accuracy``, ``mean_iou``, ``frequency_weighted_iou`` (``None`` when nothing was scored),
    ``pixels`` (scored pixels), ``classes_scored`` (in mean IoU), ``absent`` (class names in neither
    truth nor prediction: left out of mean IoU), ``per_class`` {name: {iou, accuracy, pixels (truth),
    predicted}}."""
    m = np.asarray(conf, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(classes):
        raise ValueError(f"confusion {m.shape} does not match {len(classes)} classes")
    tp = np.diag(m)
    truth = m.sum(axis=1)
    pred = m.sum(axis=0)
    union = truth + pred - tp
    total = int(m.sum())
    ious = [_ratio(tp[i], union[i]) for i in range(len(classes))]
    accs = [_ratio(tp[i], truth[i]) for i in range(len(classes))]
    scored = [v for v in ious if v is not None]
    with_truth = [a for a in accs if a is not None]
    fw = sum(int(truth[i]) * ious[i] for i in range(len(classes)) if truth[i]) / total if total else None
    return {
        "pixel_accuracy": _ratio(tp.sum(), total),
        "mean_accuracy": float(np.mean(with_truth)) if with_truth else None,
        "mean_iou": float(np.mean(scored)) if scored else None,
        "frequency_weighted_iou": fw,
        "pixels": total,
        "classes_scored": len(scored),
        "absent": [str(c) for c, v in zip(classes, ious) if v is None],
        "per_class": {
            str(c): {"iou": ious[i], "accuracy": accs[i], "pixels": int(truth[i]), "predicted": int(pred[i])}
            for i, c in enumerate(classes)
        },
    }


def _window_extreme(a: np.ndarray, width: int, fn: Any) -> np.ndarray:
    """``fn`` (np.maximum / np.minimum) over a (2w+1) x (2w+1) window on the last two axes, edges replicated."""
    pad = [(0, 0)] * (a.ndim - 2) + [(width, width), (width, width)]
    p = np.pad(a, pad, mode="edge")
    h, w = a.shape[-2:]
    rows = p[..., 0:h, :]
    for d in range(1, 2 * width + 1):
        rows = fn(rows, p[..., d : d + h, :])
    out = rows[..., 0:w]
    for d in range(1, 2 * width + 1):
        out = fn(out, rows[..., d : d + w])
    return out


def boundary_band(y_true: Any, width: int = BOUNDARY_WIDTH) -> np.ndarray:
    """bool, shaped like ``y_true`` ([H, W] or [B, H, W]): the pixels with a pixel of another label within
    ``width`` pixels (Chebyshev distance: the (2*width+1)-square window around it holds two labels), on both
    sides of every class boundary of the truth. The image edge is not a boundary; each image of a batch
    is banded alone. The ignore label counts as a label here (VOC draws its void band along object
    edges) but is never scored. For a lone ``s`` x ``s`` square the band holds
    ``(s + 2w)^2 - max(s - 2w, 0)^2`` pixels."""
    t = np.asarray(y_true)
    if t.ndim not in (2, 3):
        raise ValueError(f"truth must be [H, W] or [B, H, W], not {t.shape}")
    if width < 1:
        raise ValueError(f"the band width must be at least 1 pixel, not {width}")
    return _window_extreme(t, width, np.maximum) != _window_extreme(t, width, np.minimum)


def boundary_confusion(
    y_true: Any, y_pred: Any, num_classes: int, width: int = BOUNDARY_WIDTH, ignore: int = IGNORE
) -> np.ndarray:
    """:func:`confusion` of the pixels in :func:`boundary_band` only."""
    t = np.asarray(y_true)
    p = _labels(y_pred, t)
    band = boundary_band(t, width)
    return confusion(t[band], p[band], num_classes, ignore)


def boundary_scores(
    y_true: Any,
    y_pred: Any,
    num_classes: int,
    classes: Sequence[str] | None = None,
    *,
    width: int = BOUNDARY_WIDTH,
    ignore: int = IGNORE,
) -> dict[str, Any]:
    """:func:`scores` restricted to the band of ``width`` px along the truth's boundaries (IoU and pixel
    accuracy there: what a coarse FCN-32s loses against FCN-8s), plus ``width``."""
    names = list(classes) if classes is not None else [f"class_{i}" for i in range(num_classes)]
    return {"width": width, **scores(boundary_confusion(y_true, y_pred, num_classes, width, ignore), names)}


class StreamingScores:
    """Figures over many batches: the confusion matrices (all pixels, and the boundary band) are summed
    batch by batch, so the result equals scoring all images at once, exactly.

    ``update(y_true [B, H, W], logits_or_pred)`` takes class indices [B, H, W] or scores/logits [B, H, W, C];
    ``result()`` is :func:`scores` + ``boundary`` (scores in the band) + ``confusion`` and
    ``boundary_confusion`` (lists of lists, JSON-ready)."""

    def __init__(
        self, num_classes: int, classes: Sequence[str] | None = None, boundary_width: int = BOUNDARY_WIDTH
    ) -> None:
        self.num_classes = int(num_classes)
        self.classes = list(classes) if classes is not None else [f"class_{i}" for i in range(num_classes)]
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {num_classes} classes")
        self.boundary_width = int(boundary_width)
        self.reset()

    def reset(self) -> None:
        self.conf = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.band_conf = np.zeros_like(self.conf)
        self.images = 0

    def update(self, y_true: Any, logits_or_pred: Any) -> None:
        t = np.asarray(y_true)
        if t.ndim == 2:
            t = t[None]
            logits_or_pred = np.asarray(logits_or_pred)[None]
        p = _labels(logits_or_pred, t)
        self.conf += confusion(t, p, self.num_classes)
        self.band_conf += boundary_confusion(t, p, self.num_classes, self.boundary_width)
        self.images += int(t.shape[0])

    def result(self) -> dict[str, Any]:
        return {
            **scores(self.conf, self.classes),
            "images": self.images,
            "boundary": {"width": self.boundary_width, **scores(self.band_conf, self.classes)},
            "confusion": self.conf.tolist(),
            "boundary_confusion": self.band_conf.tolist(),
        }
