"""The training loss and metrics for the labels a run's pipeline gives.

Default (no ``--label-smoothing``, ``--mixup``, ``--cutmix``): class ids and sparse categorical
cross-entropy, as before. With any of them the training pipeline gives float label vectors
(one-hot, then mixed; :mod:`tlkit.data.mixing`), and the loss is categorical cross-entropy with
Keras' ``label_smoothing`` (``y * (1 - eps) + eps / C``): Keras 3.15's sparse loss takes no
smoothing. Multi-label data (sigmoid outputs, multi-hot labels) uses binary cross-entropy with
the same ``label_smoothing`` (``y * (1 - eps) + eps / 2``). Smoothing the mixed target is timm's
``mixup_target`` (which smooths, then mixes): the map is linear, so the two orders agree.
"""

from __future__ import annotations

from typing import Any


def soft_labels(label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0) -> bool:
    """Whether the pipeline must give float label vectors (any of the three options on)."""
    return label_smoothing > 0 or mixup > 0 or cutmix > 0


def loss(multi_label: bool = False, label_smoothing: float = 0.0, soft: bool = False) -> Any:
    """The loss: binary CE for multi-label; categorical CE for float label vectors (``soft``) or
    with smoothing; else the sparse CE of class ids (the default, unchanged)."""
    import keras

    if multi_label:
        return keras.losses.BinaryCrossentropy(label_smoothing=float(label_smoothing))
    if soft or label_smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=float(label_smoothing))
    return "sparse_categorical_crossentropy"


def metrics(num_classes: int, soft: bool = False) -> list[Any]:
    """Accuracy (and top-5 above 5 classes), named ``accuracy``/``top5`` for either kind of label.

    With mixed labels a training batch's accuracy counts the prediction against each label
    vector's largest entry (Keras' ``CategoricalAccuracy``: argmax of both)."""
    import keras

    if soft:
        out: list[Any] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            out.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
        return out
    out = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        out.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    return out


def per_example(y: Any, probs: Any, label_smoothing: float = 0.0) -> Any:
    """Per-example cross-entropy for the distributed loop: class ids ``[B]`` or float vectors ``[B, C]``."""
    import keras

    if y.shape.rank == 1:
        return keras.losses.sparse_categorical_crossentropy(y, probs)
    return keras.losses.categorical_crossentropy(y, probs, label_smoothing=float(label_smoothing))


def class_ids(y: Any) -> Any:
    """Class ids ``[B]`` (int32) of class ids or label vectors (the largest entry, as Keras' class weights)."""
    import tensorflow as tf

    if y.shape.rank == 1:
        return tf.cast(y, tf.int32)
    return tf.argmax(y, -1, output_type=tf.int32)
