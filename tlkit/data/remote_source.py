"""``--data gs://...`` and ``--data s3://...``: a folder of class subfolders on a bucket, or a CSV manifest there.

A bucket has no folders, only object names with ``/`` in them, so a remote folder is read from
one recursive listing (:func:`tlkit.storage.objects.list_tree`) instead of a walk: the same
layouts as a local folder (``root/cat/1.jpg``, or ``root/{train,val,test}/cat/1.jpg``), hidden
names (a ``.`` component) skipped, non-image names listed as ignored, and the same seeded split
by each file's name relative to the root, so a copy of a local folder on a bucket gets the same
split as the folder. There are no links on a bucket, so nothing here follows one. Items keep
their full URLs (``gs://bucket/photos/cat/1.jpg``); the input pipeline reads them through fsspec
(:mod:`tlkit.data.remote_read`).
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict

from tlkit.data.class_names import check_exportable, normalise
from tlkit.data.folder_source import folder_source
from tlkit.data.images import IMAGE_EXTENSIONS, is_image_path
from tlkit.data.sources import SPLIT_ALIASES, DataSource
from tlkit.errors import DataError
from tlkit.storage.objects import list_tree


def from_remote(
    url: str, *, val_split: float = 0.2, seed: int = 0, min_classes: int = 2, multi_label: bool = False
) -> DataSource:
    """A ``gs://`` / ``s3://`` folder of class subfolders, or a ``.csv`` manifest object. Multi-label data on
    a bucket is a manifest (a bucket has no links to put one object in several label folders)."""
    if url.lower().endswith(".csv"):
        from tlkit.data.csv_source import from_csv

        return from_csv(url, val_split=val_split, seed=seed, min_classes=min_classes, multi_label=multi_label)
    if multi_label:
        from tlkit.data.multilabel import refuse

        refuse("a folder on a bucket (--multi-label groups linked files, and a bucket has no links)")
    return from_remote_folder(url, val_split=val_split, seed=seed, min_classes=min_classes)


def _tree(names: list[str]) -> dict[str, list[str]]:
    """{top-level folder: names below it (relative to it)}; names directly at the level go under ''."""
    out: dict[str, list[str]] = defaultdict(list)
    for n in names:
        head, sep, rest = n.partition("/")
        out[head if sep else ""].append(rest if sep else n)
    return out


def from_remote_folder(url: str, *, val_split: float = 0.2, seed: int = 0, min_classes: int = 2) -> DataSource:
    """A folder of class subfolders on a bucket; see the module docstring and
    :func:`tlkit.data.folder_source.from_folder` (the same rules, read from one listing)."""
    root = url.rstrip("/")
    names = sorted(n for n in list_tree(root) if not any(part.startswith(".") for part in n.split("/")))
    top = _tree(names)
    loose = top.pop("", [])
    ignored = [{"path": f"{root}/{n}", "why": "not inside a class folder"} for n in loose]
    if not top:
        n_img = sum(is_image_path(n) for n in loose)
        raise DataError(
            f"data folder {root} has no class subfolders ({n_img} image files directly in it); expected one "
            f"subfolder per class, e.g. {root}/cat/1.jpg and {root}/dog/2.jpg"
        )
    split_dirs = {SPLIT_ALIASES.get(d.lower()) for d in top}
    by_split = (
        None not in split_dirs
        and "train" in split_dirs
        and all(any("/" in n for n in below) for below in top.values())
        and len(split_dirs) == len(top)
    )
    if by_split:
        tops = [(SPLIT_ALIASES[d.lower()], f"{root}/{d}", _tree(below)) for d, below in sorted(top.items())]
    else:
        tops = [("", root, top)]
    rows: list[tuple[str, str, str]] = []
    keys: list[str] = []
    spellings: dict[str, int] = {}
    for split, base, classes_below in tops:
        for name in sorted(classes_below):
            files = classes_below[name]
            if not name:
                ignored += [{"path": f"{base}/{n}", "why": "not inside a class folder"} for n in files]
                continue
            cdir = f"{base}/{name}"
            check_exportable([name], f"data folder {root}", f"rename the class folder {ascii(cdir)} to a one-line name")
            label = normalise(name)
            images = [f for f in files if is_image_path(f)]
            others = [f for f in files if not is_image_path(f)]
            ignored += [
                {"path": f"{cdir}/{f}", "why": f"extension not one of {' '.join(IMAGE_EXTENSIONS)}"} for f in others
            ]
            if not images:
                what = f" (it has {len(others)} other files, e.g. {others[0].rsplit('/', 1)[-1]})" if others else ""
                raise DataError(
                    f"class folder {cdir} has no image files{what}; accepted extensions: "
                    f"{' '.join(IMAGE_EXTENSIONS)}. Remove the folder or add images."
                )
            for f in images:
                rows.append((f"{cdir}/{f}", label, split))
                keys.append(f"{cdir}/{f}"[len(root) + 1 :])
            spellings[name] = spellings.get(name, 0) + len(images)
    return folder_source(
        url, root, rows, keys, spellings, by_split=by_split, ignored=ignored,
        val_split=val_split, seed=seed, min_classes=min_classes,
    )  # fmt: skip


def manifest_paths(given: list[str], base: str) -> list[str]:
    """The file each manifest row names: ``gs://`` / ``s3://`` URLs as they are, other paths relative to
    the manifest's folder ``base`` (a URL for a manifest on a bucket)."""
    from tlkit.storage.remote import is_remote, scheme_of

    out = []
    for x in given:
        if is_remote(x):
            out.append(x)
        elif scheme_of(x) == "file" or os.path.isabs(x):
            raise DataError(
                f"manifest in {base} names the local file {x}: a manifest on an object store names "
                "objects (relative to its folder, or gs:// / s3:// URLs)"
            )
        else:
            scheme, rest = base.split("://", 1)
            bucket = rest.split("/", 1)[0]
            key = posixpath.normpath(f"{rest}/{x}")
            if key.split("/", 1)[0] != bucket:
                raise DataError(f"manifest in {base}: {x} points outside the bucket {scheme}://{bucket}")
            out.append(f"{scheme}://{key}")
    return out


def existing(urls: list[str]) -> set[str]:
    """Which of these object URLs exist, from one listing per distinct folder they are in."""
    from tlkit.errors import NotFoundError

    found: set[str] = set()
    listed: list[str] = []
    for folder in sorted({u.rsplit("/", 1)[0] for u in urls}):
        if any(folder.startswith(f + "/") for f in listed):
            continue  # inside a folder already listed (recursively)
        listed.append(folder)
        try:
            found |= {f"{folder}/{n}" for n in list_tree(folder)}
        except NotFoundError:
            continue
    return found
