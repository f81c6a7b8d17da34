"""Seeded train/validation splits and class weights (no TensorFlow, no file access)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tlkit.errors import DataError


def _check_val_split(val_split: float) -> None:
    if not (0.0 <= float(val_split) < 1.0):
        raise DataError(f"--val-split must be in [0, 1), got {val_split}")


def _seeded_split(
    keys: Sequence[str], labels: Sequence[str], val_split: float, seed: int
) -> tuple[list[str], str, str]:
    """(splits, split_method, description) for sources without a split of their own."""
    if val_split > 0:
        return (
            stratified_split(keys, labels, val_split, seed),
            "stratified",
            f"split: seeded stratified, {val_split:.0%} validation, seed {seed}",
        )
    return ["train"] * len(keys), "none", "split: none (all train)"


def stratified_split(keys: Sequence[str], labels: Sequence[str], val_split: float, seed: int) -> list[str]:
    """Assign ``"train"``/``"val"`` per item: ``round(n * val_split)`` of each class to validation.

    Within a class, items are ranked by ``sha256(seed, key)`` and the lowest go to
    validation. ``keys`` are relative paths, so the split does not depend on listing order
    or on where the dataset lives. (Adding files can move an existing file between splits,
    since the count per class changes: keep a manifest with a split column to pin splits.)
    Every class with two or more items gets at least one in each split.
    """
    _check_val_split(val_split)
    out = ["train"] * len(keys)
    if val_split == 0:
        return out
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    for lab in sorted(by_class):
        idx = by_class[lab]
        n = len(idx)
        if n < 2:
            continue
        n_val = min(max(math.floor(n * val_split + 0.5), 1), n - 1)
        ranked = sorted(idx, key=lambda i: (hashlib.sha256(f"{seed}\0{keys[i]}".encode()).hexdigest(), keys[i], i))
        for i in ranked[:n_val]:
            out[i] = "val"
    return out


def class_weights(counts: Sequence[int] | Mapping[Any, int]) -> dict[int, float]:
    """Balanced class weights ``n_samples / (n_classes * count)``, as sklearn's ``"balanced"``.

    ``counts`` is per class in label-id order (or a mapping whose values are in that
    order). A class with no examples gets weight 0.0 and is not counted in ``n_classes``.
    """
    values = list(counts.values()) if isinstance(counts, Mapping) else list(counts)
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or arr.sum() <= 0:
        raise DataError("class weights need at least one example")
    present = int((arr > 0).sum())
    total = float(arr.sum())
    return {i: (total / (present * c) if c > 0 else 0.0) for i, c in enumerate(arr.tolist())}
