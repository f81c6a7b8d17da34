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


def _seeded_multilabel_split(
    keys: Sequence[str], label_lists: Sequence[Sequence[str]], val_split: float, seed: int
) -> tuple[list[str], str, str]:
    """(splits, split_method, description) for multi-label data without a split of its own."""
    if val_split > 0:
        return (
            multilabel_split(keys, label_lists, val_split, seed),
            "stratified",
            f"split: seeded, stratified by each image's rarest label, {val_split:.0%} validation, seed {seed}",
        )
    return ["train"] * len(keys), "none", "split: none (all train)"


def multilabel_split(
    keys: Sequence[str], label_lists: Sequence[Sequence[str]], val_split: float, seed: int
) -> list[str]:
    """``"train"``/``"val"`` per image of multi-label data: stratified by each image's rarest label.

    Each image goes to the stratum of its rarest label (fewest images over the data; ties by name;
    images with no label form their own stratum) and :func:`stratified_split` splits every stratum
    (seeded hash of ``keys``). Then a repair pass, label by label from the rarest, makes sure every
    label with two or more images has at least one in each split: it moves the lowest-ranked image
    of that label whose move leaves each of its other labels in the split it leaves. So the same
    seed and data give the same split, and a label with >= 2 images has a validation positive (and
    a training one) whenever moving one image can give it without taking a split's only image of
    another label.
    """
    _check_val_split(val_split)
    n = len(keys)
    if val_split == 0 or n == 0:
        return ["train"] * n
    counts: dict[str, int] = {}
    for labs in label_lists:
        for lab in set(labs):
            counts[lab] = counts.get(lab, 0) + 1
    strata = [min(set(labs), key=lambda lab: (counts[lab], lab)) if labs else "" for labs in label_lists]
    out = stratified_split(keys, [f"\0{s}" if s else "" for s in strata], val_split, seed)
    rank = sorted(range(n), key=lambda i: (hashlib.sha256(f"{seed}\0{keys[i]}".encode()).hexdigest(), keys[i], i))
    sets = [set(labs) for labs in label_lists]
    for lab in sorted(counts, key=lambda lab: (counts[lab], lab)):
        if counts[lab] < 2:
            continue
        for want in ("val", "train"):
            if any(out[i] == want and lab in sets[i] for i in range(n)):
                continue
            other = "train" if want == "val" else "val"
            per_label = {}  # images of each label in the split images would leave
            for i in range(n):
                if out[i] == other:
                    for x in sets[i]:
                        per_label[x] = per_label.get(x, 0) + 1
            for i in rank:
                if out[i] == other and lab in sets[i] and all(per_label[x] > 1 for x in sets[i] if x != lab):
                    out[i] = want
                    break
    return out
