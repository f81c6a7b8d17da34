"""Data sources: what the user typed (``photos/``, ``labels.csv``, ``tfds:NAME``, ``builtin:digits``)
as a :class:`DataSource`.

:func:`resolve` turns the argument into the class names, every item with its label and split,
and a one-line description. It never decodes an image (that is the preflight's job,
:mod:`tlkit.data.preflight`) and never imports TensorFlow for file sources. Folders and CSV
manifests are read here; prepared TFDS datasets in :mod:`tlkit.data.tfds_source`; seeded
splits in :mod:`tlkit.data.splits`; the ``tf.data`` pipeline in :mod:`tlkit.data.pipeline`.

Every problem that must stop a run is a :class:`DataError` naming the path, class or
column at fault and what would be accepted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlkit.data.images import IMAGE_EXTENSIONS, is_image_path
from tlkit.data.splits import _check_val_split, _seeded_split
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
MANIFEST_COLUMNS = ("path", "label", "split")  # split is optional
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
    kind: str  # "files" | "tfds"
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
) -> DataSource:
    """Resolve a data argument to a :class:`DataSource`, or raise :class:`DataError`.

    ``source`` is a folder of class subfolders (optionally under ``train/``, ``val/``,
    ``test/``), a ``.csv`` manifest (``path,label[,split]``), ``tfds:NAME[:VERSION][:TRAIN[:VAL[:TEST]]]``
    (prepared in ``tfds_data_dir``; nothing is downloaded) or ``builtin:digits`` /
    ``builtin:faces``. Without a given split, ``val_split`` of each class goes to
    validation, chosen by a seeded hash of each file's relative path (see :func:`stratified_split`).
    ``min_classes`` is 2 for training; evaluation of one class may pass 1.
    """
    _check_val_split(val_split)
    spec = str(source).strip()
    if not spec:
        raise DataError("no data given: pass a folder, a .csv manifest, tfds:NAME or builtin:digits")
    if spec.startswith("builtin:"):
        from tlkit.data import builtins as builtin_data

        name = spec.split(":", 1)[1]
        folder = builtin_data.ensure(name, cache_dir=cache_dir)
        src = from_folder(folder, val_split=val_split, seed=seed, min_classes=min_classes)
        src.spec = spec
        about = builtin_data.BUILTINS[name]["description"]
        src.description = src.description.replace(f"folder {src.root}", f"{spec} ({about}) at {src.root}", 1)
        return src
    if spec.startswith("tfds:"):
        from tlkit.data.tfds_source import from_tfds

        return from_tfds(spec, data_dir=tfds_data_dir, val_split=val_split, min_classes=min_classes)
    path = Path(spec).expanduser()
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
        return from_csv(path, val_split=val_split, seed=seed, min_classes=min_classes)
    return from_folder(path, val_split=val_split, seed=seed, min_classes=min_classes)


def _walk_class(folder: Path, root: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Every non-hidden non-folder entry under the class folder ``folder`` (sorted), and what was not followed.

    Links to folders are followed, but each real folder is read at most once: a second path to
    it (a link loop such as ``dog/loop -> .``, or two links to one folder) is not followed
    again, and a link to a folder above the class folder (the data root, ``..``) is not
    followed at all (it would pull other classes in under this one's name). A file reached
    through two paths (``b.png -> a.png``) is listed once. Each of these, and folders that
    cannot be listed, is reported as ``ignored`` (path, why). Entries that are not regular
    files (FIFOs, sockets, dangling links) are listed like files: the preflight reports them
    without opening them.
    """
    # (path, real path) of each file; a real path is computed with realpath (a syscall per path
    # component) only for links: other files' real path is their folder's real path plus their name.
    files: list[tuple[Path, str]] = []
    ignored: list[dict[str, str]] = []
    top = os.path.realpath(folder)
    # The class folder's own subfolders (reached without a link) are read where they are; a link
    # to one of them is the second path.
    seen_dirs: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        seen_dirs[os.path.realpath(dirpath)] = Path(dirpath)
    above = {os.path.realpath(root)} | {str(x) for x in Path(top).parents}
    stack = [(folder, top)]
    while stack:
        d, d_real = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            ignored.append({"path": str(d), "why": f"folder cannot be listed: {exc.strerror or exc}"})
            continue
        subdirs = []
        for e in entries:
            path = Path(e.path)
            try:
                is_dir = e.is_dir()  # follows links; False for a dangling one
            except OSError:
                is_dir = False
            link = e.is_symlink()
            if not is_dir:
                files.append((path, os.path.realpath(path) if link else os.path.join(d_real, e.name)))
                continue
            real = os.path.realpath(path) if link else os.path.join(d_real, e.name)
            if seen_dirs.get(real) == path:  # one of the class folder's own subfolders
                subdirs.append((path, real))
            elif real in seen_dirs:
                ignored.append(
                    {
                        "path": str(path),
                        "why": f"link to a folder read as {seen_dirs[real]} "
                        "(a link loop or a second link to it): not followed again",
                    }
                )
            elif real in above:
                ignored.append(
                    {
                        "path": str(path),
                        "why": f"link to {real}, a folder above the class folder (a link loop): not followed",
                    }
                )
            else:
                seen_dirs[real] = path
                subdirs.append((path, real))
        stack.extend(reversed(subdirs))
    # One entry per real file, preferring a path that is not itself a link (then the first by name).
    # Dangling links all stay: each is reported on its own.
    by_real: dict[str, list[Path]] = {}
    for f, real in files:
        by_real.setdefault(real, []).append(f)
    kept = []
    for real, group in by_real.items():
        if len(group) > 1 and not os.path.exists(real):  # dangling links to one target: each is its own file
            kept += group
            continue
        group.sort(key=lambda f: (os.path.islink(f), str(f)))
        kept.append(group[0])
        ignored += [
            {"path": str(f), "why": f"same file as {group[0]} (reached again through a symbolic link): counted once"}
            for f in group[1:]
        ]
    return sorted(kept), ignored


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def from_folder(
    folder: str | os.PathLike, *, val_split: float = 0.2, seed: int = 0, min_classes: int = 2
) -> DataSource:
    """A folder of class subfolders (``root/cat/1.jpg``), or ``root/{train,val,test}/cat/1.jpg``.

    Files below a class folder (at any depth) belong to that class; files whose extension is
    not an image's are left out and listed in ``ignored``. Hidden files and folders (``.name``,
    e.g. macOS ``._photo.jpg`` resource forks) are skipped silently.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    subdirs = _subdirs(root)
    ignored: list[dict[str, str]] = []
    loose = [p for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if not subdirs:
        n_img = sum(is_image_path(p) for p in loose)
        raise DataError(
            f"data folder {root} has no class subfolders ({n_img} image files directly in it); expected one "
            f"subfolder per class, e.g. {root}/cat/1.jpg and {root}/dog/2.jpg"
        )
    ignored += [{"path": str(p), "why": "not inside a class folder"} for p in loose]

    split_dirs = {SPLIT_ALIASES.get(d.name.lower()) for d in subdirs}
    # train/ val/ test/ layout: every top folder is a split name, train is there, and each holds class folders.
    by_split = (
        None not in split_dirs
        and "train" in split_dirs
        and all(_subdirs(d) for d in subdirs)
        and len(split_dirs) == len(subdirs)
    )
    rows: list[tuple[str, str, str]] = []  # (path, label, split or "")
    keys: list[str] = []
    tops = [(SPLIT_ALIASES[d.name.lower()], d) for d in subdirs] if by_split else [("", root)]
    for split, top in tops:
        for cdir in _subdirs(top):
            n_before = len(rows)
            others = []
            found, not_followed = _walk_class(cdir, root)
            ignored += not_followed
            for f in found:
                if is_image_path(f):
                    rows.append((str(f), cdir.name, split))
                    keys.append(f.relative_to(root).as_posix())
                else:
                    others.append(f)
            ignored += [{"path": str(f), "why": f"extension not one of {' '.join(IMAGE_EXTENSIONS)}"} for f in others]
            if len(rows) == n_before:
                what = f" (it has {len(others)} other files, e.g. {others[0].name})" if others else ""
                raise DataError(
                    f"class folder {cdir} has no image files{what}; accepted extensions: "
                    f"{' '.join(IMAGE_EXTENSIONS)}. Remove the folder or add images."
                )
        if by_split:
            loose_in_split = [p for p in sorted(top.iterdir()) if p.is_file() and not p.name.startswith(".")]
            ignored += [{"path": str(p), "why": "not inside a class folder"} for p in loose_in_split]
    classes = sorted({r[1] for r in rows})
    _check_classes(classes, min_classes, f"data folder {root}", "class subfolder")
    df = pd.DataFrame(rows, columns=["path", "label", "split"])
    notes = near_duplicate_classes(
        df["label"], "folder names are the class names as they are: rename the folders to merge them"
    )
    if by_split:
        method = "folders"
        how = "split: given by the train/val/test folders"
    else:
        df["split"], method, how = _seeded_split(keys, df["label"].tolist(), val_split, seed)
    items = _finish_items(df, classes)
    desc = f"folder {root}: {len(classes)} classes, {len(items)} images; {how}"
    return DataSource(
        spec=str(folder),
        kind="files",
        classes=classes,
        items=items,
        description=desc,
        root=str(root),
        split_method=method,
        ignored=ignored,
        warnings=notes,
    )


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


def from_csv(csv_path: str | os.PathLike, *, val_split: float = 0.2, seed: int = 0, min_classes: int = 2) -> DataSource:
    """A CSV manifest with columns ``path``, ``label`` and optionally ``split`` (train/val/test).

    Relative paths are relative to the CSV's folder. Rows whose file is missing are kept
    (the preflight lists and skips them); a manifest where no file exists is an error.
    """
    p = Path(csv_path).expanduser().resolve()
    if not p.is_file():
        raise DataError(f"manifest {csv_path} does not exist")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest {p} is not a readable CSV: {exc}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    accepted = "path, label (required) and split (optional: train/val/test)"
    unknown = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise DataError(
            f"manifest {p} has unknown column(s) {', '.join(repr(c) for c in unknown)}; accepted columns: {accepted}"
        )
    missing = [c for c in ("path", "label") if c not in df.columns]
    if missing:
        raise DataError(
            f"manifest {p} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(df.columns) or 'none'}); accepted columns: {accepted}"
        )
    if len(df) == 0:
        raise DataError(f"manifest {p} has no rows")
    raw_labels = df["label"].astype(str)
    padded = np.flatnonzero((raw_labels != raw_labels.str.strip()).to_numpy())
    for col in df.columns:
        df[col] = df[col].astype(str).str.strip()
        blank = np.flatnonzero((df[col] == "").to_numpy())
        if len(blank):
            lines = ", ".join(str(i + 2) for i in blank[:10])  # +2: header line, 1-based
            raise DataError(
                f"manifest {p}: empty {col!r} on line(s) {lines}"
                + (f" and {len(blank) - 10} more" if len(blank) > 10 else "")
            )
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
    base = p.parent
    # Absolute but not resolved: a link stays the path the manifest names (a dangling one is reported as such).
    abs_paths = [os.path.abspath(base / Path(x).expanduser()) for x in given]
    if not any(os.path.lexists(a) for a in abs_paths):
        raise DataError(
            f"none of the {len(abs_paths)} paths in manifest {p} exists (first: {abs_paths[0]}); "
            f"relative paths are taken relative to the manifest's folder {base}"
        )
    classes = sorted(set(df["label"]))
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
    notes += near_duplicate_classes(
        df["label"],
        "surrounding whitespace in CSV labels is stripped, case is kept: fix the label column to merge them",
    )
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


def dataset_size(source: DataSource, split: str) -> int:
    """Number of examples in ``split`` (0 for a split the source does not have)."""
    if source.kind == "tfds":
        expr = source.tfds_splits.get(split)
        return int(source.builder().info.splits[expr].num_examples) if expr else 0
    assert source.items is not None
    return int((source.items["split"] == split).sum())
