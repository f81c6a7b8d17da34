"""Multi-label CSV manifests: ``path,labels[,split]`` where ``labels`` holds names separated by ``|``.

``cat|dog`` is an image with both labels; spaces around each name are stripped (``cat | dog``);
an empty cell is an image with none of the labels (allowed, and counted by the report). A name
with ``,``, ``;`` or a tab in it is refused: it is most likely two names written with another
separator. Rows naming one path are one image with all their labels (a long manifest, one row per
image and label, reads as the same data). Called by :func:`tlkit.data.csv_source.from_csv`, which
reads the file, the paths and the split column as for a single-label manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tlkit.data.class_names import check_exportable, normalise
from tlkit.data.multilabel import SEPARATOR, finish_items, merge_rows, split_cell
from tlkit.errors import DataError

FOREIGN_SEPARATORS = (",", ";", "\t")


def parse_labels(cells: pd.Series, where: str) -> tuple[list[list[str]], Counter]:
    """(each row's label names, NFC-normalised; how often each name was written as it was)."""
    raw: Counter = Counter()
    out: list[list[str]] = []
    for line, cell in enumerate(cells.astype(str).tolist(), start=2):  # +2: header line, 1-based
        names = split_cell(cell)
        for name in names:
            bad = next((s for s in FOREIGN_SEPARATORS if s in name), None)
            if bad is not None:
                raise DataError(
                    f"{where}: label {name!r} on line {line} contains {bad!r}; separate the labels of a "
                    f"'labels' cell with {SEPARATOR!r} (e.g. cat{SEPARATOR}dog)"
                )
        raw.update(names)
        out.append(list(dict.fromkeys(normalise(n) for n in names)))
    check_exportable(sorted(raw), where, "change that label in the manifest's labels column to a one-line name")
    return out, raw


def finish(
    where: str,
    abs_paths: Sequence[str],
    keys: Sequence[str],
    label_lists: Sequence[list[str]],
    splits: Sequence[str] | None,
    classes: list[str],
    val_split: float,
    seed: int,
) -> tuple[pd.DataFrame, str, str]:
    """(items, split_method, description of the split) of a multi-label manifest: rows of one path
    merged, then the manifest's splits or a seeded multi-label split (:func:`tlkit.data.splits.multilabel_split`)."""
    from tlkit.data.splits import _seeded_multilabel_split

    key_of: dict[str, str] = {}
    for a, k in zip(abs_paths, keys):
        key_of.setdefault(a, k)
    given = splits if splits is not None else [""] * len(abs_paths)
    paths, lists, got = merge_rows(abs_paths, label_lists, given, where)
    if splits is not None:
        return finish_items(paths, lists, got, classes), "manifest", "split: from the manifest's split column"
    out, method, how = _seeded_multilabel_split([key_of[p] for p in paths], lists, val_split, seed)
    return finish_items(paths, lists, out, classes), method, how


def describe(items: pd.DataFrame, classes: list[str]) -> str:
    """``N labels, M images (K with none), multi-label``."""
    none = int((items["label_id"] < 0).sum())
    return f"{len(classes)} labels, {len(items)} images ({none} with none), multi-label"


def flat_names(label_lists: Sequence[list[str]]) -> list[Any]:
    """Every label name of every row (for the near-duplicate name warning)."""
    return [n for labs in label_lists for n in labs]
