"""The preflight's per-file check for objects on a bucket: the bytes are fetched many at a time, then judged
exactly as a local file's are (:func:`tlkit.data.preflight.inspect_file` / ``inspect_header``).

A local check opens each file in a thread; an object costs a round trip, so objects are fetched
in chunks of :data:`CHUNK` with one concurrent request batch each
(:func:`tlkit.storage.objects.read_many`), and the chunk's bytes are then decoded on the
preflight's threads. Each object is read once: the hash for the duplicate check comes from the
same bytes. A store that refuses access stops the check with one line (every other object
would be refused too); an object gone since the listing is a bad file (``missing``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from tlkit.errors import ImageError

CHUNK = 256  # objects per concurrent fetch: bounds the bytes held at once (256 camera photos: ~1 GB at most)


def inspect_data(path: str, data: bytes | BaseException, *, thorough: bool) -> dict[str, Any]:
    """The preflight's verdict on one object's bytes (or on the error its read gave)."""
    from tlkit.data.images import decode_rgb, read_header
    from tlkit.data.jpeg_check import jpeg_structure_problem
    from tlkit.data.preflight import _usable
    from tlkit.storage.remote import storage_error

    if isinstance(data, FileNotFoundError):
        return {"ok": False, "reason": "missing", "detail": "no such object (deleted since it was listed?)"}
    if isinstance(data, PermissionError):
        raise storage_error(path, data, "read") from data
    if isinstance(data, BaseException):
        return {"ok": False, "reason": "unreadable", "detail": f"{type(data).__name__}: {data}"}
    try:
        if thorough or data[:3] != b"\xff\xd8\xff":
            arr, mode, fmt, orientation = decode_rgb(io.BytesIO(data), path)
            h, w = arr.shape[:2]
            return _usable(h, w, mode, fmt, orientation, hashlib.sha256(data).hexdigest())
        problem = jpeg_structure_problem(data)  # as inspect_header: JPEGs by their markers, decoded once later
        if problem is not None:
            return {"ok": False, "reason": "truncated" if "truncated" in problem else "corrupt", "detail": problem}
        h, w, mode, fmt, orientation = read_header(io.BytesIO(data), path)
        return {**_usable(h, w, mode, fmt, orientation, hashlib.sha256(data).hexdigest()), "decoded": False}
    except ImageError as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except Exception as exc:  # noqa: BLE001  (PIL raises many kinds on garbage: skip the file, do not stop the check)
        return {"ok": False, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}


def check_objects(
    paths: list[str], todo: list[int], pool: Any, *, thorough: bool, done: Callable[[int, dict[str, Any]], None]
) -> None:
    """Check ``paths[i]`` for each ``i`` in ``todo`` (all objects on a store), calling ``done(i, result)``."""
    from tlkit.storage.objects import read_many

    for start in range(0, len(todo), CHUNK):
        part = todo[start : start + CHUNK]
        blobs = read_many([paths[i] for i in part])
        verdicts = pool.map(lambda ib: inspect_data(paths[ib[0]], ib[1], thorough=thorough), zip(part, blobs))
        for i, result in zip(part, verdicts):
            done(i, result)
        del blobs
