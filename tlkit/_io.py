"""Atomic writes (the only place tlkit does them) and small process helpers.

Every file or folder a user may rely on is written beside its target under a temporary
name (``.NAME.tmp``, or ``.NAME.tmp.EXT`` where the writer needs the extension) and then
renamed over it: readers see the old one or the new one, never half. A temporary file is
removed on any failure or interrupt; one left by a kill is recognised by
:func:`tlkit.finetune.rundir.is_temp_name` and cleaned by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """A temporary name for writing ``path``: same folder (so the rename is atomic), hidden, unique per
    writer (two processes writing one file never share a temporary), ``.tmp`` marked."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; renamed over ``path`` when the block succeeds.

    ``suffix`` keeps an extension a writer insists on (``.keras``, ``.png``). The temporary
    file (or folder) goes on any failure or interrupt.
    """
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        move_into_place(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """JSON (indented, non-JSON values as strings) written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def move_into_place(src: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename a finished file or folder ``src`` onto ``target`` in one step.

    For writers that choose their own temporary (a download, a folder of shards, a
    SavedModel version): same file system as ``target``; a folder replaces only a missing
    or empty one. Readers and watchers see the old ``target`` (or none), or the complete new one.
    """
    os.replace(src, target)
    return Path(target)


# What the operating system says when a write finds no room: a full disk, a quota, a file-size limit.
_NO_ROOM_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NO_ROOM_TEXTS = tuple(os.strerror(e) for e in sorted(_NO_ROOM_ERRNOS))


def no_room(exc: BaseException) -> str | None:
    """The operating system's reason when ``exc`` is a write that found no room (``No space left on
    device``, ``File too large``, ``Disk quota exceeded``), else None.

    Also for errors that carry the reason only as text, such as TensorFlow's ``SaveV2 ... File too
    large``, which are not ``OSError``.
    """
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM_ERRNOS:
        return os.strerror(exc.errno)
    if isinstance(exc, Exception):
        text = str(exc)
        for reason in _NO_ROOM_TEXTS:
            if reason in text:
                return reason
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a lock's or a temp folder's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
