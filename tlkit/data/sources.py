"""Data sources: what the user typed (``photos/``, ``labels.csv``, ``tfds:NAME``, ``builtin:digits``)
as a :class:`DataSource`.

:func:`resolve` turns the argument into the class names, every item with its label and split,
and a one-line description. It never decodes an image (that is the preflight's job,
:mod:`tlkit.data.preflight`) and never imports TensorFlow for file sources. This module holds
the :class:`DataSource`, the dispatch and the checks every reader shares; folders are read in
:mod:`tlkit.data.folder_source`, CSV manifests in :mod:`tlkit.data.csv_source`, prepared TFDS
datasets in :mod:`tlkit.data.tfds_source`; seeded splits in :mod:`tlkit.data.splits`; the
``tf.data`` pipeline in :mod:`tlkit.data.pipeline`.

Every problem that must stop a run is a :class:`DataError` naming the path, class or
column at fault and what would be accepted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tlkit.data.splits import _check_val_split
from tlkit.errors import DataError

SPLITS = ("train", "val", "test")
# Spellings accepted in a manifest's split column (and as folder names), mapped to tlkit's.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
MANIFEST_COLUMNS = ("path", "label", "labels", "split")  # split is optional; labels: multi-label (one of the two)
DEFAULT_TFDS_DATA_DIR = "~/tensorflow_datasets"


@dataclass
class DataSource:
    """A resolved dataset: class names plus items (files) or a prepared TFDS builder.

    For ``kind == "files"``, ``items`` has one row per file with columns ``path``
    (absolute), ``label`` (class name), ``label_id`` (index into ``classes``) and
    ``split`` (``train``/``val``/``test``). ``classes`` is sorted for files; for TFDS it is
    the dataset's own ``ClassLabel`` order (its label ids are fixed by the dataset).
    """

    spec: str
    kind: str  # "files" | "tfds" | "records" (a folder written by tlkit prepare: tlkit.data.records_source)
    classes: list[str]
    items: pd.DataFrame | None = field(default=None, compare=False)
    description: str = ""
    root: str = ""  # the folder, the manifest, or the prepared TFDS directory
    split_method: str = ""  # "stratified" | "manifest" | "folders" | "tfds" | "none"
    ignored: list[dict[str, str]] = field(default_factory=list)  # files left out before checks: path, why
    warnings: list[str] = field(default_factory=list)  # found while resolving (labels); the report repeats them
    # TFDS only: tlkit split name -> TFDS split expression, and the feature keys.
    tfds_splits: dict[str, str] = field(default_factory=dict)
    image_key: str = ""
    label_key: str = ""
    # Several labels per image (tlkit.data.multilabel): items has label_ids, the pipeline yields multi-hot labels.
    multi_label: bool = False
    _builder: Any = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def builder(self) -> Any:
        """The TFDS builder of a ``tfds`` source (read from its prepared directory, no code needed)."""
        if self.kind != "tfds":
            raise DataError(f"{self.spec} is not a TFDS source")
        if self._builder is None:
            import tensorflow_datasets as tfds

            self._builder = tfds.builder_from_directory(self.root)
        return self._builder

    def splits(self) -> list[str]:
        """The tlkit splits that hold data, in train/val/test order."""
        if self.kind == "tfds":
            return [s for s in SPLITS if s in self.tfds_splits]
        assert self.items is not None
        present = set(self.items["split"])
        return [s for s in SPLITS if s in present]


# --------------------------------------------------------------------------- resolving


def resolve(
    source: str,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    tfds_data_dir: str | None = None,
    cache_dir: str | None = None,
    min_classes: int = 2,
    multi_label: bool = False,
) -> DataSource:
    """Resolve a data argument to a :class:`DataSource`, or raise :class:`DataError`.

    ``source`` is a folder of class subfolders (optionally under ``train/``, ``val/``,
    ``test/``; local, ``file://``, ``gs://`` or ``s3://``), a ``.csv`` manifest (``path,label[,split]``),
    ``tfds:NAME[:VERSION][:TRAIN[:VAL[:TEST]]]``
    (prepared in ``tfds_data_dir``; nothing is downloaded) or ``builtin:digits`` /
    ``builtin:faces``, or a folder written by ``tlkit prepare`` (local, ``gs://`` or ``s3://``;
    recognised by its manifest; its splits are the prepared ones, ``val_split`` and ``seed`` unused:
    :mod:`tlkit.data.records_source`). Without a given split, ``val_split`` of each class goes to
    validation, chosen by a seeded hash of each file's relative path (see :func:`stratified_split`).
    ``min_classes`` is 2 for training; evaluation of one class may pass 1. ``multi_label``: label
    folders where an image in several of them is one image with all those labels
    (:mod:`tlkit.data.multilabel_folders`); a CSV with a ``labels`` column is multi-label without it.
    """
    _check_val_split(val_split)
    spec = str(source).strip()
    if not spec:
        raise DataError("no data given: pass a folder, a .csv manifest, tfds:NAME or builtin:digits")
    # The readers import DataSource from here: imported when used, like the TFDS one.
    from tlkit.data.csv_source import from_csv
    from tlkit.data.folder_source import from_folder
    from tlkit.data.records_source import from_prepared, is_prepared

    if is_prepared(spec):  # a folder written by tlkit prepare (local or on gs:// / s3://): its own splits
        if multi_label:
            from tlkit.data.multilabel import refuse

            refuse("a tlkit prepare folder (prepared records hold one label per image)")
        return from_prepared(spec, min_classes=min_classes)

    if spec.startswith("builtin:"):
        from tlkit.data import builtins as builtin_data

        name = spec.split(":", 1)[1]
        folder = builtin_data.ensure(name, cache_dir=cache_dir)
        src = from_folder(folder, val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label)
        src.spec = spec
        about = builtin_data.BUILTINS[name]["description"]
        src.description = src.description.replace(f"folder {src.root}", f"{spec} ({about}) at {src.root}", 1)
        return src
    if spec.startswith("tfds:"):
        from tlkit.data.tfds_source import from_tfds

        if multi_label:
            from tlkit.data.multilabel import refuse

            refuse("tfds: sources (a TFDS ClassLabel is one label per image)")

        return from_tfds(spec, data_dir=tfds_data_dir, val_split=val_split, min_classes=min_classes)
    from tlkit.storage.remote import check_scheme, is_remote, local_path

    check_scheme(spec)
    if is_remote(spec):  # gs:// and s3://: one listing, no walk (tlkit.data.remote_source)
        from tlkit.data.remote_source import from_remote

        return from_remote(spec, val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label)
    path = Path(local_path(spec)).expanduser()
    if not path.exists():
        hint = ""
        if ":" in spec.split("/")[0] and not spec.startswith(("tfds:", "builtin:")):
            hint = " (data sources with a prefix are tfds:NAME and builtin:digits / builtin:faces)"
        raise DataError(f"data path {spec} does not exist{hint}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(
                f"{spec} is a file but not a .csv manifest; pass a folder of class subfolders "
                f"or a CSV with columns path,label[,split]"
            )
        return from_csv(path, val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label)
    return from_folder(path, val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def near_duplicate_classes(labels: Sequence[str] | pd.Series, how: str) -> list[str]:
    """Warnings for class names that differ only in case or surrounding whitespace (``Cat`` / ``cat``).

    They are kept as separate classes (a model learns two names for one thing, and each
    gets half the images); ``how`` says how to merge them for this kind of source.
    """
    counts = pd.Series(list(labels), dtype=object).value_counts()
    groups: dict[str, list[str]] = {}
    for name in sorted(counts.index):
        groups.setdefault(str(name).strip().casefold(), []).append(str(name))
    out = []
    for names in groups.values():
        if len(names) > 1:
            listed = " and ".join(f"{n!r} ({int(counts[n])} file(s))" for n in names)
            out.append(
                f"class names {listed} differ only in case or surrounding whitespace: they are "
                f"{len(names)} separate classes; {how}"
            )
    return out


def _check_classes(classes: list[str], min_classes: int, where: str, what: str) -> None:
    if len(classes) < min_classes:
        found = f"only one class ({classes[0]!r})" if len(classes) == 1 else "no classes"
        raise DataError(f"{where} has {found}; a classifier needs at least {min_classes} (one {what} per class)")


def _finish_items(df: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    ids = {c: i for i, c in enumerate(classes)}
    df = df.assign(label_id=df["label"].map(ids).astype("int64"))
    df = df.sort_values(["path", "split"], kind="stable").reset_index(drop=True)
    return df[["path", "label", "label_id", "split"]]


def dataset_size(source: DataSource, split: str) -> int:
    """Number of examples in ``split`` (0 for a split the source does not have)."""
    if source.kind == "tfds":
        expr = source.tfds_splits.get(split)
        return int(source.builder().info.splits[expr].num_examples) if expr else 0
    assert source.items is not None
    return int((source.items["split"] == split).sum())


def count_table(items: pd.DataFrame, splits: list[str], classes: list[str]) -> dict[str, dict[str, int]]:
    """``{split: {class: files}}`` for every split and class given (0 where none), in one pass over
    the items: comparing every row with every class would cost (classes x files). Multi-label items
    (with ``label_ids``) count each image once under every label it carries (positives per label)."""
    if "label_ids" in items.columns:
        pairs = zip(items["split"].tolist(), items["label_ids"].tolist())
        n = Counter((s, classes[j]) for s, ids in pairs for j in ids)
        return {s: {c: n.get((s, c), 0) for c in classes} for s in splits}
    n = Counter(zip(items["split"].tolist(), items["label"].tolist()))
    return {s: {c: n.get((s, c), 0) for c in classes} for s in splits}
