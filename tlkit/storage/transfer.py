"""Copy folders to and from an object store so that a reader never sees half of one.

A single object appears whole or not at all on GCS and S3 (a PUT is atomic), but a folder of
objects has no atomic rename. So a folder is *published* the way Beam's file sinks finish: every
file is uploaded first, and the one file a reader looks for to know the folder is complete
(``saved_model.pb`` for a SavedModel version, a manifest or ``state.json`` for others) goes last.
"""

from __future__ import annotations

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


def download_tree(url: str, local_dir: str | os.PathLike) -> list[Path]:
    """Download every object under ``url`` into ``local_dir`` (same relative names); returns the local files."""
    fs = filesystem(url)
    prefix = url.rstrip("/")
    try:
        remote = sorted(fs.find(prefix))
    except OSError as e:
        raise storage_error(url, e, "list") from e
    scheme = prefix.split("://", 1)[0]
    out = []
    for path in remote:
        full = path if "://" in path else f"{scheme}://{path}"
        rel = full[len(prefix) :].lstrip("/")
        if not rel:
            continue
        dest = Path(local_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get_file(full, str(dest))
        except OSError as e:
            raise storage_error(full, e, "read") from e
        out.append(dest)
    return out
