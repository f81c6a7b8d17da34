"""ImageNet-1k class names, shipped with the package (never downloaded).

``keras.applications.*.decode_predictions`` fetches ``imagenet_class_index.json``
on first use, which fails offline; tlkit reads ``tlkit/data/imagenet_classes.tsv``
(columns: index, synset, name) instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import NamedTuple

import numpy as np

NUM_CLASSES = 1000


class ImageNetClass(NamedTuple):
    index: int
    synset: str
    name: str


class Prediction(NamedTuple):
    index: int
    synset: str
    name: str
    prob: float


@functools.lru_cache(maxsize=1)
def classes() -> tuple[ImageNetClass, ...]:
    """All 1000 classes in index order, read once from the packaged TSV."""
    text = resources.files("tlkit").joinpath("data/imagenet_classes.tsv").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0].split("\t")
    if header[:3] != ["index", "synset", "name"]:
        raise ValueError(f"imagenet_classes.tsv: unexpected header {header!r}")
    out = []
    for i, line in enumerate(lines[1:]):
        idx, synset, name = line.split("\t")[:3]
        if int(idx) != i:
            raise ValueError(f"imagenet_classes.tsv: row {i + 2} has index {idx}, expected {i}")
        out.append(ImageNetClass(i, synset, name))
    if len(out) != NUM_CLASSES:
        raise ValueError(f"imagenet_classes.tsv: {len(out)} classes, expected {NUM_CLASSES}")
    return tuple(out)


def class_names() -> list[str]:
    """The 1000 human-readable names, by class index."""
    return [c.name for c in classes()]


def synsets() -> list[str]:
    """The 1000 WordNet ids (``n01440764`` ...), by class index."""
    return [c.synset for c in classes()]


def decode_predictions(probs: np.ndarray | Sequence[float], top: int = 5) -> list[Prediction] | list[list[Prediction]]:
    """Top-``top`` classes as ``(index, synset, name, prob)``, highest first.

    A 1-D input (one image's 1000 scores) gives one list; a 2-D batch gives one
    list per row. Ties keep the lower index first.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] != NUM_CLASSES:
        raise ValueError(f"expected scores of shape (1000,) or (N, 1000), got {arr.shape}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    top = min(int(top), NUM_CLASSES)
    table = classes()

    def one(row: np.ndarray) -> list[Prediction]:
        order = np.argsort(-row, kind="stable")[:top]
        return [Prediction(int(i), table[i].synset, table[i].name, float(row[i])) for i in order]

    return one(arr) if arr.ndim == 1 else [one(r) for r in arr]
