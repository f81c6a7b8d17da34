"""Copy folders to and from an object store so that a reader never sees half of one.

A single object appears whole or not at all on GCS and S3 (a PUT is atomic), but a folder of
objects has no atomic rename. So a folder is *published* the way Beam's file sinks finish: every
file is uploaded first, and the one file a reader looks for to know the folder is complete
(``saved_model.pb`` for a SavedModel version, a manifest or ``state.json`` for others) goes last.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from tlkit.storage.remote import filesystem, join, storage_error


def upload_tree(local_dir: str | os.PathLike, url: str, *, last: Sequence[str] = ()) -> list[str]:
    """Upload every file under ``local_dir`` to ``url`` (same relative names); the names in ``last``
    (relative paths, in that order) are uploaded after all others. Returns the uploaded URLs."""
    root = Path(local_dir)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    order = [f for f in files if f not in last] + [f for f in last if f in files]
    fs = filesystem(url)
    done = []
    for rel in order:
        target = join(url, rel)
        try:
            fs.put_file(str(root / rel), target)
        except OSError as e:
            raise storage_error(target, e, "write") from e
        done.append(target)
    return done


def relative_names(url: str, *, missing_ok: bool = False) -> list[str]:
    """Names, relative to ``url``, of every object under it (a fresh listing), sorted.

    A missing bucket or prefix raises the one-line :func:`storage_error`, or gives ``[]`` with ``missing_ok``.
    """
    fs = filesystem(url)
    prefix = url.rstrip("/")
    with contextlib.suppress(Exception):
        fs.invalidate_cache(prefix)  # another process may have written since this one last listed
    try:
        found = fs.find(prefix)
    except FileNotFoundError as e:
        if missing_ok:
            return []
        raise storage_error(url, e, "list") from e
    except OSError as e:
        raise storage_error(url, e, "list") from e
    scheme = prefix.split("://", 1)[0]
    names = []
    for path in found:
        full = path if "://" in path else f"{scheme}://{path}"
        if full.startswith(prefix + "/") and full != prefix + "/":
            names.append(full[len(prefix) + 1 :])
    return sorted(names)


def download_names(url: str, names: Sequence[str], local_dir: str | os.PathLike) -> list[Path]:
    """Download the objects ``url/NAME`` for each name, in that order, to ``local_dir/NAME``."""
    fs = filesystem(url)
    out = []
    for rel in names:
        dest = Path(local_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get_file(join(url, rel), str(dest))
        except OSError as e:
            raise storage_error(join(url, rel), e, "read") from e
        out.append(dest)
    return out


def download_tree(url: str, local_dir: str | os.PathLike) -> list[Path]:
    """Download every object under ``url`` into ``local_dir`` (same relative names); returns the local files."""
    return download_names(url, relative_names(url), local_dir)
