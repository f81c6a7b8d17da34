"""Reading user data from a bucket: one recursive listing for a whole folder, many objects per request.

A folder of 200k photos on a bucket is 200k objects under a prefix. Listing it folder by folder
costs a request per folder and a stat per file; :func:`list_tree` asks once (``find`` with
``detail=True``: the store pages through the prefix and gives every object's size and
version with its name). :func:`read_many` fetches a list of objects concurrently with
fsspec's ``cat_ranges`` (its public many-objects read; ``cat`` would glob a name with
``[`` or ``*`` in it). The version an object had when listed (GCS generation, else S3
ETag, else the modification time) is remembered as its *identity*, which the preflight's
remembered checks and the ``--cache`` folder's key use as a local file's size and times.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from tlkit.errors import NotFoundError
from tlkit.storage.remote import filesystem, is_remote, scheme_of, storage_error

_IDENTITIES: dict[str, list] = {}  # full URL -> [size, version] as last listed
_LOCK = threading.Lock()


def _identity(info: dict[str, Any]) -> list:
    """[size, version] of a listed object; any write gives a new version (generation or ETag)."""
    version = next(
        (info[k] for k in ("generation", "ETag", "etag", "LastModified", "mtime", "updated") if info.get(k)), ""
    )
    return [int(info.get("size") or 0), str(version)]


def _full(scheme: str, key: str) -> str:
    return key if "://" in key else f"{scheme}://{key}"


def list_tree(url: str) -> dict[str, list]:
    """Every object under the folder ``url`` (recursively), as {relative name: [size, version]}.

    One listing request sequence for the whole prefix. A missing bucket, refused access or an
    empty prefix is a one-line :class:`NotFoundError` / :class:`DataError`.
    """
    prefix = url.rstrip("/")
    scheme = scheme_of(prefix)
    fs = filesystem(prefix)
    try:
        found = fs.find(prefix, detail=True)
    except OSError as e:
        raise storage_error(url, e, "list") from e
    out: dict[str, list] = {}
    with _LOCK:
        for key, info in found.items():
            full = _full(scheme, key)
            if info.get("type") == "directory" or full.endswith("/") or not full.startswith(prefix + "/"):
                continue  # folder placeholders, and the prefix itself when it names one object
            ident = _identity(info)
            _IDENTITIES[full] = ident
            out[full[len(prefix) + 1 :]] = ident
    if not out:
        raise NotFoundError(f"{url}: no objects under this prefix on the object store; check the bucket and the path")
    return out


def identity(url: str) -> list | None:
    """[size, version] of the object ``url``: as listed, else asked of the store; None if it does not exist."""
    with _LOCK:
        known = _IDENTITIES.get(url)
    if known is not None:
        return known
    try:
        info = filesystem(url).info(url)
    except (FileNotFoundError, PermissionError):
        return None
    except OSError as e:
        raise storage_error(url, e, "read") from e
    ident = _identity(info)
    with _LOCK:
        _IDENTITIES[url] = ident
    return ident


def read_many(paths: Sequence[str]) -> list[bytes | BaseException]:
    """The bytes of each path (``gs://``, ``s3://`` or local), in order; a failed read gives its exception.

    Objects of one store are fetched concurrently (fsspec's ``cat_ranges``, in its batches).
    """
    out: list[bytes | BaseException] = [b""] * len(paths)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(scheme_of(p) if is_remote(p) else "", []).append(i)
    for scheme, idx in groups.items():
        if not scheme:
            for i in idx:
                try:
                    with open(os.fspath(paths[i]), "rb") as f:
                        out[i] = f.read()
                except OSError as e:
                    out[i] = e
            continue
        urls = [str(paths[i]) for i in idx]
        got = filesystem(urls[0]).cat_ranges(urls, None, None, on_error="return")
        for i, data in zip(idx, got):
            out[i] = data
    return out


def read_one(path: str) -> bytes:
    """The bytes of one object; a store's refusal is a one-line tlkit error."""
    data = read_many([path])[0]
    if isinstance(data, BaseException):
        raise storage_error(path, data, "read") from data
    return data
