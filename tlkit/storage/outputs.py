"""Outputs on an object store: the bucket checked before any work, one writer at a time, files published whole.

A command whose ``--out`` is ``gs://`` or ``s3://`` builds its output locally as it always does and
publishes it at the end (one PUT per file: an object appears whole or not at all). Before that
expensive work, :func:`remote_output_lock` creates a lock object beside the output with the store's
conditional write (``mode="create"``: GCS ``ifGenerationMatch=0``, S3 ``If-None-Match: *``): that is
both the one-writer rule and the check that the bucket exists and takes writes, so a missing bucket
or refused access is one line before TensorFlow loads, and nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from tlkit._io import pid_alive
from tlkit.errors import NotFoundError, OutputInUseError
from tlkit.storage.remote import filesystem, storage_error


def bucket_of(url: str) -> str:
    """``gs://bucket`` of ``gs://bucket/a/b``."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def check_bucket(url: str) -> Any:
    """The file system of ``url`` once its bucket answered; a missing bucket or refused access is one line."""
    fs = filesystem(url)
    bucket = bucket_of(url)
    try:
        fs.info(bucket)  # one call (GCS: the bucket's metadata, else a listing; S3: HEAD bucket), not a listing
    except FileNotFoundError as e:
        raise NotFoundError(f"{url}: bucket {bucket} does not exist (or is not visible to these credentials)") from e
    except OSError as e:
        raise storage_error(url, e, "reach") from e
    return fs


def lock_url(url: str, *, inside: bool) -> str:
    """The lock object of output ``url``: ``URL/.tlkit.lock`` for a folder (``inside``), else ``.NAME.tlkit.lock``
    beside the object (the local lock's names, :func:`tlkit._lock.output_lock_path`)."""
    url = url.rstrip("/")
    if inside:
        return f"{url}/.tlkit.lock"
    head, _, name = url.rpartition("/")
    return f"{head}/.{name}.tlkit.lock"


def _take(fs: Any, lock: str, body: bytes) -> dict | None:
    """Create ``lock``; None when taken, else the holder's info (``{}`` when unreadable)."""
    try:
        if not fs.exists(lock):  # a store that ignores the precondition (an emulator) still sees a holder
            fs.pipe_file(lock, body, mode="create")  # atomic on GCS and S3: exactly one creator wins
            return None
    except FileExistsError:
        pass  # another process created it between the two calls, or the store refused the precondition
    except OSError as e:
        raise storage_error(lock, e, "write") from e
    try:
        info = json.loads(fs.cat_file(lock))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def remote_output_lock(url: str, *, inside: bool = False, flag: str = "--out") -> Iterator[str]:
    """Hold the lock object of output ``url`` while the block runs (yields the lock's URL).

    A live holder refuses at once (one line naming it). A lock left by a killed process is taken
    over when that process ran on this host and is gone; one from another host cannot be checked
    from here, so the message names the lock object to delete once its process is known to be gone.
    """
    fs = check_bucket(url)
    lock = lock_url(url, inside=inside)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    body = json.dumps(me).encode()
    for _ in range(3):
        holder = _take(fs, lock, body)
        if holder is None:
            break
        pid = holder.get("pid")
        if holder.get("host") == me["host"] and isinstance(pid, int) and pid != me["pid"] and not pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(lock)  # its process is gone: take the lock over
            continue
        who = f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
        raise OutputInUseError(
            f"{url} is in use by another tlkit process ({who}); wait for it to finish or pass another {flag} "
            f"(if that process is gone, delete {lock})"
        )
    else:
        raise OutputInUseError(f"could not lock {url}: {lock} keeps changing; is another tlkit process starting?")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            fs.rm_file(lock)


def put_whole(local: str | os.PathLike, url: str) -> str:
    """Upload one file: readers see the old object or the complete new one (a single PUT, or a
    resumable/multipart upload that the store makes visible only once complete)."""
    fs = filesystem(url)
    try:
        fs.put_file(os.fspath(local), url)
    except OSError as e:
        raise storage_error(url, e, "write") from e
    return url
