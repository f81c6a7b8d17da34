"""The validation metric ``tlkit segment finetune`` compiles: mean IoU on logits, ignore label 255.

Keras 3's own ``keras.metrics.MeanIoU(num_classes, ignore_class=255, sparse_y_pred=False)`` does it
right (checked against :mod:`tlkit.segment.metrics` in tests/test_segment_metrics.py, Keras 3.15): it
argmaxes the logits' last axis, drops truth pixels equal to 255, accumulates an int64 confusion matrix
and averages IoU over the classes present in truth or prediction (absent ones left out, as
:func:`tlkit.segment.metrics.scores` does). Its result is float32, so it equals the exact figure to
about 1e-7. Backend-neutral (``keras.ops`` inside).
"""

from __future__ import annotations

from typing import Any

from tlkit.segment.metrics import IGNORE


def mean_iou_metric(num_classes: int, name: str = "mean_iou") -> Any:
    """A ``keras.metrics.MeanIoU`` for ``model.compile(metrics=[...])`` on a segmenter whose output is
    logits [B, H, W, C] and whose masks are class indices [B, H, W] with 255 = ignore; logged as
    ``name`` (``val_mean_iou`` on validation data)."""
    import keras

    return keras.metrics.MeanIoU(num_classes=num_classes, ignore_class=IGNORE, sparse_y_pred=False, name=name)
