"""Folders of class subfolders (``root/cat/1.jpg`` or ``root/train/cat/1.jpg``) as a
:class:`~tlkit.data.sources.DataSource`.

Walks each class folder (hidden entries skipped, symbolic links followed once, files reached
twice counted once, non-image files listed as ignored), reads split folders when every
top-level folder is a split name, and otherwise splits by a seeded hash of each file's
relative path (:mod:`tlkit.data.splits`). Images are not opened here (the preflight does).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tlkit.data.class_names import check_exportable, merged_spellings, normalise
from tlkit.data.images import IMAGE_EXTENSIONS, is_image_path
from tlkit.data.sources import (
    SPLIT_ALIASES,
    DataSource,
    _check_classes,
    _finish_items,
    _subdirs,
    near_duplicate_classes,
)
from tlkit.data.splits import _seeded_split
from tlkit.errors import DataError


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
        if len(group) > 1:  # (a sort key that asks the file system, only where there is a choice)
            group.sort(key=lambda f: (os.path.islink(f), str(f)))
        kept.append(group[0])
        ignored += [
            {"path": str(f), "why": f"same file as {group[0]} (reached again through a symbolic link): counted once"}
            for f in group[1:]
        ]
    return sorted(kept), ignored


def from_folder(
    folder: str | os.PathLike, *, val_split: float = 0.2, seed: int = 0, min_classes: int = 2, multi_label: bool = False
) -> DataSource:
    """A folder of class subfolders (``root/cat/1.jpg``), or ``root/{train,val,test}/cat/1.jpg``.

    Files below a class folder (at any depth) belong to that class; files whose extension is
    not an image's are left out and listed in ``ignored``. Hidden files and folders (``.name``,
    e.g. macOS ``._photo.jpg`` resource forks) are skipped silently. ``multi_label``: one folder per
    label, an image in several of them one image with all their labels (:mod:`tlkit.data.multilabel_folders`).
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
    spellings: dict[str, int] = {}  # each class folder name as written -> its image files
    for split, top in tops:
        for cdir in _subdirs(top):
            # Refused before anything is walked: a run would train, then its export would refuse the name.
            check_exportable(
                [cdir.name], f"data folder {root}", f"rename the class folder {ascii(str(cdir))} to a one-line name"
            )
            label = normalise(cdir.name)  # NFC: 'café' from macOS and from Linux is one class
            n_before = len(rows)
            others = []
            found, not_followed = _walk_class(cdir, root)
            ignored += not_followed
            for f in found:
                if is_image_path(f):
                    rows.append((str(f), label, split))
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
            spellings[cdir.name] = spellings.get(cdir.name, 0) + len(rows) - n_before
        if by_split:
            loose_in_split = [p for p in sorted(top.iterdir()) if p.is_file() and not p.name.startswith(".")]
            ignored += [{"path": str(p), "why": "not inside a class folder"} for p in loose_in_split]
    return folder_source(
        str(folder), str(root), rows, keys, spellings, by_split=by_split, ignored=ignored,
        val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label,
    )  # fmt: skip


def folder_source(
    spec: str,
    root: str,
    rows: list[tuple[str, str, str]],
    keys: list[str],
    spellings: dict[str, int],
    *,
    by_split: bool,
    ignored: list[dict[str, str]],
    val_split: float,
    seed: int,
    min_classes: int,
    multi_label: bool = False,
) -> DataSource:
    """The :class:`DataSource` of a listed folder, local or on a bucket (:mod:`tlkit.data.remote_source`):
    ``rows`` (path, label, split), ``keys`` (each file's name relative to ``root``, what the seeded
    split hashes, so a bucket copy splits as the local folder does), class-folder ``spellings``."""
    classes = sorted({r[1] for r in rows})
    _check_classes(classes, min_classes, f"data folder {root}", "class subfolder")
    df = pd.DataFrame(rows, columns=["path", "label", "split"])
    notes = merged_spellings(spellings.items(), "class folders")
    notes += near_duplicate_classes(
        df["label"], "folder names are the class names as they are: rename the folders to merge them"
    )
    if multi_label:
        from tlkit.data.multilabel_folders import multilabel_items

        items, method, how, merged = multilabel_items(
            rows, keys, classes, by_split=by_split, val_split=val_split, seed=seed
        )
        return DataSource(
            spec=spec, kind="files", classes=classes, items=items, root=root, split_method=method,
            description=f"folder {root}: {len(classes)} labels, {len(items)} images ({merged} more entries "
            f"in other label folders are the same images), multi-label; {how}",
            ignored=ignored, warnings=notes, multi_label=True,
        )  # fmt: skip
    if by_split:
        method, how = "folders", "split: given by the train/val/test folders"
    else:
        df["split"], method, how = _seeded_split(keys, df["label"].tolist(), val_split, seed)
    items = _finish_items(df, classes)
    return DataSource(
        spec=spec,
        kind="files",
        classes=classes,
        items=items,
        description=f"folder {root}: {len(classes)} classes, {len(items)} images; {how}",
        root=root,
        split_method=method,
        ignored=ignored,
        warnings=notes,
    )
