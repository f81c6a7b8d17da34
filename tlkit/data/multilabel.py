"""Multi-label data: an image carries any number of the classes (photo tagging), not exactly one.

A multi-label :class:`~tlkit.data.sources.DataSource` (``multi_label=True``) keeps one row per
image in ``items``, with the columns of a single-label source plus ``label_ids``:

* ``label``: the image's label names joined with ``|`` (:data:`SEPARATOR`), ``""`` for none;
* ``label_id``: the first (lowest) label id, ``-1`` for an image with none (for code that needs one int);
* ``label_ids``: the sorted tuple of label ids (``()`` for none).

The input pipeline (:func:`tlkit.data.pipeline.make_dataset`) then yields float32 multi-hot
labels ``[B, C]`` (:func:`multi_hot`) instead of int32 ids ``[B]``. Where the rows come from:
a CSV with a ``labels`` column (:mod:`tlkit.data.csv_source`), or label folders with an image in
several of them (:mod:`tlkit.data.multilabel_folders`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tlkit.errors import DataError

SEPARATOR = "|"
ITEM_COLUMNS = ("path", "label", "label_id", "label_ids", "split")


def multi_hot(label_ids_column: Iterable[Sequence[int]], num_classes: int) -> np.ndarray:
    """float32 ``[N, num_classes]``: row ``i`` is 1.0 at each id of ``label_ids_column[i]``, else 0.0."""
    rows = list(label_ids_column)
    out = np.zeros((len(rows), int(num_classes)), dtype=np.float32)
    for i, ids in enumerate(rows):
        ids = [int(j) for j in ids]
        if any(j < 0 or j >= num_classes for j in ids):
            raise DataError(f"label id(s) {ids} of row {i} are outside 0..{num_classes - 1}")
        out[i, ids] = 1.0
    return out


def label_array(source: Any, items: pd.DataFrame) -> np.ndarray:
    """The labels the input pipeline feeds for ``items`` of ``source``: float32 multi-hot ``[N, C]``
    for a multi-label source, int32 ids ``[N]`` otherwise."""
    if getattr(source, "multi_label", False):
        return multi_hot(items["label_ids"].tolist(), source.num_classes)
    return items["label_id"].to_numpy(dtype=np.int32)


def split_cell(cell: str) -> list[str]:
    """The label names of one ``labels`` cell: split at ``|``, each stripped; empty parts dropped
    (``""`` is an image with none of the labels; ``"cat|"`` is ``cat``)."""
    return [part.strip() for part in str(cell).split(SEPARATOR) if part.strip()]


def finish_items(
    paths: Sequence[str], label_lists: Sequence[Iterable[str]], splits: Sequence[str], classes: list[str]
) -> pd.DataFrame:
    """The ``items`` frame of a multi-label source (see the module docstring), sorted by path and split."""
    ids = {c: i for i, c in enumerate(classes)}
    id_tuples = [tuple(sorted({ids[name] for name in labs})) for labs in label_lists]
    df = pd.DataFrame(
        {
            "path": list(paths),
            "label": [SEPARATOR.join(classes[i] for i in t) for t in id_tuples],
            "label_id": np.array([t[0] if t else -1 for t in id_tuples], dtype=np.int64),
            "label_ids": pd.Series(id_tuples, dtype=object),
            "split": list(splits),
        }
    )
    df = df.sort_values(["path", "split"], kind="stable").reset_index(drop=True)
    return df[list(ITEM_COLUMNS)]


def merge_rows(
    paths: Sequence[str], label_lists: Sequence[Iterable[str]], splits: Sequence[str], where: str
) -> tuple[list[str], list[list[str]], list[str]]:
    """Rows naming the same path (a long manifest: one row per image and label) as one image with the
    union of their labels. Two rows of one path in different splits are refused (the image would be
    in both)."""
    order: dict[str, int] = {}
    out_labels: list[list[str]] = []
    out_splits: list[str] = []
    for p, labs, s in zip(paths, label_lists, splits):
        i = order.get(p)
        if i is None:
            order[p] = len(out_labels)
            out_labels.append(list(labs))
            out_splits.append(s)
            continue
        if out_splits[i] != s:
            raise DataError(
                f"{where} puts {p} in split {out_splits[i]!r} and in {s!r}: one image is in one split; "
                "give its rows one split value"
            )
        out_labels[i] += [x for x in labs if x not in out_labels[i]]
    return list(order), out_labels, out_splits


def label_counts(items: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """int64 ``[C]``: images carrying each label."""
    out = np.zeros(len(classes), dtype=np.int64)
    for ids in items["label_ids"]:
        for j in ids:
            out[int(j)] += 1
    return out


def refuse(what: str) -> None:
    """One line: multi-label data does not go with ``what``."""
    raise DataError(
        f"multi-label data (a CSV 'labels' column or --multi-label) does not work with {what}; "
        "use a folder of label folders or a CSV manifest with a 'labels' column directly"
    )


def remap(items: pd.DataFrame, classes: list[str], to: list[str]) -> pd.DataFrame:
    """Multi-label ``items`` whose ids index ``classes`` with ids that index ``to`` instead (a run's
    labels, for new data whose own label list may be smaller); every one of ``classes`` must be in ``to``."""
    where = {c: i for i, c in enumerate(to)}
    ids = [tuple(sorted(where[classes[j]] for j in t)) for t in items["label_ids"]]
    out = items.copy()
    out["label_ids"] = pd.Series(ids, index=out.index, dtype=object)
    out["label_id"] = np.array([t[0] if t else -1 for t in ids], dtype=np.int64)
    return out
