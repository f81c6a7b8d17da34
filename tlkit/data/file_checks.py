"""Running the per-file checks: threads, a progress bar, and remembered results, so that a
second preflight over unchanged files reads none of them again.

A file's check (decoded fully: size, mode, format, content hash, or why it is bad) is kept
with the file's identity at the time: size, modification and status-change times in
nanoseconds, and inode. Any write to the file changes its status-change time, which no
program can set back, so a changed file (same path, new bytes) is always checked again. One
cache file per data source, under ``<tlkit cache>/preflight/``; it holds only that source's
current files, so it does not grow past the data set. Written atomically; two processes
checking the same data at once each write a complete cache (the last one stays).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tlkit._io import write_text_atomic
from tlkit.storage.remote import is_remote

VERSION = 2  # bump when inspect_file's result changes meaning
RACY_NS = 2_000_000_000  # files modified less than 2 s before their check are not remembered


def file_identity(path: str) -> list | None:
    """(size, mtime_ns, ctime_ns, inode) of a regular file; None for anything else (never cached).

    An object on a bucket (``gs://``, ``s3://``) is (size, version) as listed: its generation or
    ETag, which every write changes (:func:`tlkit.storage.objects.identity`).
    """
    if is_remote(path):
        from tlkit.storage.objects import identity

        return identity(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class CheckCache:
    """The remembered checks of one data source's files."""

    def __init__(self, source_key: str, root: str | os.PathLike | None = None) -> None:
        from tlkit.data.builtins import cache_root

        digest = hashlib.sha256(source_key.encode()).hexdigest()[:20]
        self.path = cache_root(root) / "preflight" / f"{digest}.json"
        self.source_key = source_key
        self._old: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._read = False  # the file held this source's checks (then an unchanged set is not written again)
        self.reused = 0
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == VERSION and data.get("source") == source_key:
                self._old = data.get("files", {})
                self._read = True
        except (OSError, ValueError, AttributeError):
            pass  # no cache, or an unreadable one: check everything

    def get(self, path: str, *, need_decoded: bool = False) -> dict[str, Any] | None:
        """The remembered result for ``path`` if the file is unchanged since, else None.

        ``need_decoded``: only a result of a full decode will do (a header-only check of a
        usable file, ``"decoded": False``, is not reused by a thorough check).
        """
        entry = self._old.get(path)
        ident = file_identity(path)
        if entry is None or ident is None or entry.get("id") != ident:
            return None
        if need_decoded and entry["result"].get("decoded") is False:
            return None
        self._new[path] = entry
        self.reused += 1
        return dict(entry["result"])

    def put(self, path: str, result: dict[str, Any], ident: list[int] | None) -> None:
        """Remember ``result`` for ``path`` as it was when checked (``ident`` taken before the check)."""
        if ident is None or ident != file_identity(path):  # changed while it was being read
            return
        # "Racily clean" files (as git calls them): written within the clock's granularity of now, a
        # second write could keep size and times. Only files older than that are remembered.
        # An object's version changes with every write, so objects are never racy.
        if len(ident) > 2 and time.time_ns() - max(ident[1], ident[2]) < RACY_NS:
            return
        self._new[path] = {"id": ident, "result": result}

    def save(self) -> None:
        """Write the checks of this source's current files (not when they are the ones read: nothing changed)."""
        if self._read and self._new == self._old:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Compact: one line per source, written by json's C encoder (indenting 200,000 entries
            # goes through its Python encoder, about 10 times slower).
            data = {"version": VERSION, "source": self.source_key, "files": self._new}
            write_text_atomic(self.path, json.dumps(data, separators=(",", ":")))
        except OSError:
            pass  # a read-only cache folder: the next check reads the files again, nothing else changes


def check_files(
    paths: list[str],
    chosen: Sequence[int],
    results: list[dict[str, Any]],
    inspect: Callable[[str], dict[str, Any]],
    *,
    workers: int,
    progress: bool,
    cache_key: str | None,
    cache_dir: str | os.PathLike | None = None,
    need_decoded: bool = False,
) -> int:
    """Fill ``results[i]`` with ``inspect(paths[i])`` for every ``i`` in ``chosen``, on ``workers``
    threads with a progress bar, reusing remembered results of unchanged files when
    ``cache_key`` is given (with ``need_decoded``, only results of full decodes). Returns how
    many results were reused."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    remembered = CheckCache(cache_key, cache_dir) if cache_key is not None else None
    todo = []
    for i in chosen:
        hit = remembered.get(paths[i], need_decoded=need_decoded) if remembered is not None else None
        if hit is None:
            todo.append(int(i))
        else:
            results[i] = hit
    # Objects on a bucket are fetched many at a time (tlkit.data.remote_checks), not opened one by one.
    remote = [i for i in todo if is_remote(paths[i])]
    if remote:
        todo = [i for i in todo if not is_remote(paths[i])]

    def _check(path: str) -> tuple[dict[str, Any], list[int] | None]:
        ident = file_identity(path)  # before the read: a file changed while it is read is not remembered
        return inspect(path), ident

    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(
            total=len(todo) + len(remote),
            unit="files",
            desc="checking images",
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        ) as bar,
    ):
        # In chunks: Executor.map submits everything at once, a million futures for a million files.
        for start in range(0, len(todo), 4096):
            part = todo[start : start + 4096]
            for i, (r, ident) in zip(part, pool.map(_check, [paths[i] for i in part])):
                results[i] = r
                if remembered is not None:
                    remembered.put(paths[i], r, ident)
                bar.update(1)
        if remote:
            from tlkit.data.remote_checks import check_objects

            def done(i: int, r: dict[str, Any]) -> None:
                results[i] = r
                if remembered is not None:
                    remembered.put(paths[i], r, file_identity(paths[i]))
                bar.update(1)

            check_objects(paths, remote, pool, thorough=need_decoded, done=done)
    if remembered is None:
        return 0
    remembered.save()
    return remembered.reused


def source_key(spec: str) -> str:
    """A data source's cache key: its resolved path where it is one, else the spec as given (a URL without
    its trailing ``/``)."""
    if is_remote(spec):
        return spec.rstrip("/")
    try:
        p = Path(spec)
        return str(p.resolve()) if p.exists() else spec
    except (OSError, ValueError):
        return spec
