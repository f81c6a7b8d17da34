"""``--multi-label`` folders: one folder per label, an image in several label folders is one image
with all those labels.

An image is "in several folders" when its entries there are one file or the same bytes:

* a symbolic link or a hard link: the entries resolve to one file, i.e. one ``(st_dev, st_ino)``
  from ``os.stat`` (which follows links), so one ``stat`` per file finds both kinds;
* a copy: the same bytes, by SHA-256 of the content. Only files whose size equals another
  file's size are read (and hashed), so a folder where copies are rare costs one ``stat`` per file,
  not a read of every image (the preflight reads every file later anyway, but resolving must stay
  cheap: ``tlkit finetune --workers`` resolves before any worker starts).

Files are grouped within a split only: the same image in ``train/cat`` and ``val/dog`` stays two
images, which the preflight reports as a leak. The image's path is the group's first entry that is
not a link (else its first by name); its split key (what the seeded split hashes) is that path's.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from tlkit.data.multilabel import finish_items


def _identity(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return ("path", path)  # dangling link or unreadable: on its own (the preflight reports it)
    return ("inode", st.st_dev, st.st_ino, st.st_size)


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def group_images(rows: Sequence[tuple[str, str, str]], keys: Sequence[str]) -> tuple[list, list, list, list, int]:
    """(paths, label lists, splits, keys, entries merged) of one image per group of ``rows``
    (path, label, split) that are one file or the same bytes within a split."""
    ident = [_identity(p) for p, _, _ in rows]
    # Same bytes: only among distinct files of one size (and split).
    by_size: dict[tuple, set] = defaultdict(set)
    for (_, _, s), idn in zip(rows, ident):
        if idn[0] == "inode":
            by_size[(s, idn[3])].add(idn)
    content: dict[tuple, tuple] = {}
    for files in by_size.values():
        if len(files) < 2:
            continue
        path_of = {idn: p for (p, _, _), idn in zip(rows, ident) if idn in files}
        for idn in files:
            sha = _sha256(path_of[idn])
            if sha is not None:
                content[idn] = ("sha256", sha)
    groups: dict[tuple, list[int]] = {}
    for i, ((_, _, s), idn) in enumerate(zip(rows, ident)):
        groups.setdefault((s, content.get(idn, idn)), []).append(i)
    paths, label_lists, splits, out_keys = [], [], [], []
    merged = 0
    for members in groups.values():
        members.sort(key=lambda i: (os.path.islink(rows[i][0]), rows[i][0]) if len(members) > 1 else 0)
        first = members[0]
        paths.append(rows[first][0])
        label_lists.append(list(dict.fromkeys(rows[i][1] for i in members)))
        splits.append(rows[first][2])
        out_keys.append(keys[first])
        merged += len(members) - 1
    return paths, label_lists, splits, out_keys, merged


def multilabel_items(
    rows: Sequence[tuple[str, str, str]],
    keys: Sequence[str],
    classes: list[str],
    *,
    by_split: bool,
    val_split: float,
    seed: int,
) -> tuple[pd.DataFrame, str, str, int]:
    """(items, split_method, split description, entries merged) of label folders read as multi-label."""
    from tlkit.data.splits import _seeded_multilabel_split

    paths, lists, splits, ks, merged = group_images(rows, keys)
    if by_split:
        method, how = "folders", "split: given by the train/val/test folders"
    else:
        splits, method, how = _seeded_multilabel_split(ks, lists, val_split, seed)
    return finish_items(paths, lists, splits, classes), method, how, merged
