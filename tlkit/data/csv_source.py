"""CSV manifests (``path,label[,split]``) as a :class:`~tlkit.data.sources.DataSource`.

Reads the manifest with every value as text, refuses unknown columns, empty values and
unknown split names with a :class:`DataError` naming the line or column, strips padded
labels with a warning, resolves paths relative to the manifest, and splits a manifest
without a split column by a seeded hash (:mod:`tlkit.data.splits`). Images are not opened
here (the preflight does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlkit.data.class_names import check_exportable, merged_spellings, normalise
from tlkit.data.sources import (
    MANIFEST_COLUMNS,
    SPLIT_ALIASES,
    DataSource,
    _check_classes,
    _finish_items,
    near_duplicate_classes,
)
from tlkit.data.splits import _seeded_split
from tlkit.errors import DataError
from tlkit.storage.remote import is_remote


def from_csv(
    csv_path: str | os.PathLike,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    min_classes: int = 2,
    multi_label: bool = False,
) -> DataSource:
    """A CSV manifest with columns ``path``, ``label`` and optionally ``split`` (train/val/test).

    A ``labels`` column instead of ``label`` makes it multi-label (:mod:`tlkit.data.multilabel_csv`):
    each cell holds the image's label names separated by ``|``, an empty cell an image with none.
    ``multi_label`` reads a ``label`` column so too (rows naming one path are one image).

    Relative paths are relative to the CSV's folder (its bucket folder for a manifest on ``gs://`` or
    ``s3://``); ``gs://`` and ``s3://`` URLs are taken as they are. Rows whose file is missing are kept
    (the preflight lists and skips them); a manifest where no file exists is an error.
    """
    remote = is_remote(csv_path)
    if remote:  # a manifest on a bucket: read once, its rows name objects (tlkit.data.remote_source)
        import io

        from tlkit.storage.objects import read_one

        p: Any = str(csv_path)
        text: Any = io.BytesIO(read_one(p))
    else:
        p = text = Path(csv_path).expanduser().resolve()
        if not p.is_file():
            raise DataError(f"manifest {csv_path} does not exist")
    try:
        df = pd.read_csv(text, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest {p} is not a readable CSV: {exc}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    accepted = "path, label or labels (required; labels: names separated by |) and split (optional: train/val/test)"
    unknown = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise DataError(
            f"manifest {p} has unknown column(s) {', '.join(repr(c) for c in unknown)}; accepted columns: {accepted}"
        )
    if "label" in df.columns and "labels" in df.columns:
        raise DataError(
            f"manifest {p} has both a 'label' and a 'labels' column; keep one: label (one class per row) "
            "or labels (multi-label: names separated by |)"
        )
    multi_label = multi_label or "labels" in df.columns
    missing = [c for c in ("path", "labels" if "labels" in df.columns else "label") if c not in df.columns]
    if missing:
        raise DataError(
            f"manifest {p} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(df.columns) or 'none'}); accepted columns: {accepted}"
        )
    if len(df) == 0:
        raise DataError(f"manifest {p} has no rows")
    if multi_label:
        df.columns = ["label" if c == "labels" else c for c in df.columns]  # one reader for both
    raw_labels = df["label"].astype(str)
    padded = np.flatnonzero((raw_labels != raw_labels.str.strip()).to_numpy())
    for col in df.columns:
        df[col] = df[col].astype(str).str.strip()
        if multi_label and col == "label":
            continue  # an empty labels cell is an image with none of the labels
        blank = np.flatnonzero((df[col] == "").to_numpy())
        if len(blank):
            lines = ", ".join(str(i + 2) for i in blank[:10])  # +2: header line, 1-based
            raise DataError(
                f"manifest {p}: empty {col!r} on line(s) {lines}"
                + (f" and {len(blank) - 10} more" if len(blank) > 10 else "")
            )
    if multi_label:  # cells of names separated by |, checked and normalised (tlkit.data.multilabel_csv)
        from tlkit.data import multilabel_csv

        label_lists, raw_counts = multilabel_csv.parse_labels(df["label"], f"manifest {p}")
        padded = padded[:0]  # spaces around each name are stripped, as documented
    else:
        # Refused before anything else: a run would train, then its export would refuse the name.
        check_exportable(
            sorted(set(df["label"])),
            f"manifest {p}",
            "change that label in the manifest's label column to a one-line name",
        )
        raw_counts = df["label"].value_counts()
        df["label"] = df["label"].map(normalise)  # NFC: 'café' from macOS and from Linux is one class
    has_split = "split" in df.columns
    if has_split:
        mapped = df["split"].str.lower().map(SPLIT_ALIASES)
        bad = sorted(set(df["split"][mapped.isna()]))
        if bad:
            raise DataError(
                f"manifest {p}: unknown split value(s) {', '.join(repr(b) for b in bad)}; "
                f"accepted: {', '.join(sorted(SPLIT_ALIASES))}"
            )
        df["split"] = mapped
        if not (df["split"] == "train").any():
            raise DataError(f"manifest {p} has a split column but no 'train' rows")
    given = df["path"].tolist()
    if remote:
        from tlkit.data.remote_source import existing, manifest_paths

        base: Any = p.rsplit("/", 1)[0]
        abs_paths = manifest_paths(given, base)
        found = existing(abs_paths)
        some = any(a in found for a in abs_paths)
    else:
        base = p.parent
        # Absolute but not resolved: a link stays the path the manifest names (a dangling one is reported as such).
        abs_paths = [x if is_remote(x) else os.path.abspath(base / Path(x).expanduser()) for x in given]
        some = any(os.path.lexists(a) for a in abs_paths if not is_remote(a)) or any(is_remote(a) for a in abs_paths)
    if not some:
        raise DataError(
            f"none of the {len(abs_paths)} paths in manifest {p} exists (first: {abs_paths[0]}); "
            f"relative paths are taken relative to the manifest's folder {base}"
        )
    classes = sorted({n for labs in label_lists for n in labs} if multi_label else set(df["label"]))
    _check_classes(classes, min_classes, f"manifest {p}", "label value")
    notes = []
    if len(padded):
        shown = ", ".join(f"{raw_labels.iloc[i]!r} on line {i + 2}" for i in padded[:5])
        more = f" and {len(padded) - 5} more" if len(padded) > 5 else ""
        first = raw_labels.iloc[padded[0]]
        notes.append(
            f"{len(padded)} label(s) in manifest {p} had surrounding whitespace ({shown}{more}): stripped, "
            f"so {first!r} and {first.strip()!r} are one class"
        )
    notes += merged_spellings(((str(k), int(v)) for k, v in raw_counts.items()), f"labels in manifest {p}")
    notes += near_duplicate_classes(
        multilabel_csv.flat_names(label_lists) if multi_label else df["label"],
        "surrounding whitespace in CSV labels is stripped, case is kept: fix the label column to merge them",
    )
    if multi_label:
        items, method, how = multilabel_csv.finish(
            f"manifest {p}", abs_paths, given, label_lists, df["split"].tolist() if has_split else None,
            classes, val_split, seed,
        )  # fmt: skip
        desc = f"manifest {p}: {multilabel_csv.describe(items, classes)}; {how}"
        return DataSource(
            spec=str(csv_path), kind="files", classes=classes, items=items, description=desc, root=str(p),
            split_method=method, warnings=notes, multi_label=True,
        )  # fmt: skip
    out = pd.DataFrame({"path": abs_paths, "label": df["label"].tolist()})
    if has_split:
        out["split"] = df["split"].tolist()
        method, how = "manifest", "split: from the manifest's split column"
    else:
        out["split"], method, how = _seeded_split(given, out["label"].tolist(), val_split, seed)
    items = _finish_items(out, classes)
    desc = f"manifest {p}: {len(classes)} classes, {len(items)} rows; {how}"
    return DataSource(
        spec=str(csv_path),
        kind="files",
        classes=classes,
        items=items,
        description=desc,
        root=str(p),
        split_method=method,
        warnings=notes,
    )
