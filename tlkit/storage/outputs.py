"""Outputs on an object store: the bucket checked before any work, one writer at a time, files published whole.

A command whose ``--out`` is ``gs://`` or ``s3://`` builds its output locally as it always does and
publishes it at the end (one PUT per file: an object appears whole or not at all). Before that
expensive work, :func:`remote_output_lock` creates a lock object beside the output with the store's
conditional write (GCS ``ifGenerationMatch=0``, S3 ``If-None-Match: *``; :mod:`tlkit.storage.store_lock`): that is
both the one-writer rule and the check that the bucket exists and takes writes, so a missing bucket
or refused access is one line before TensorFlow loads, and nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tlkit.errors import NotFoundError, OutputInUseError
from tlkit.storage.remote import filesystem, storage_error
from tlkit.storage.store_lock import StoreLock


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


@contextlib.contextmanager
def remote_output_lock(url: str, *, inside: bool = False, flag: str = "--out") -> Iterator[str]:
    """Hold the lock object of output ``url`` while the block runs (yields the lock's URL).

    The same lock as a run's on a store (:class:`tlkit.storage.store_lock.StoreLock`: created only if
    absent, a stale one on this host taken over by compare-and-swap). A live holder refuses at once
    (one line naming it); one from another host cannot be checked from here, so the message says to
    delete the lock object once its process is known to be gone.
    """
    check_bucket(url)
    lock = StoreLock(
        lock_url(url, inside=inside),
        url,
        error=OutputInUseError,
        advice=f"wait for it to finish or pass another {flag} (if that process is gone, delete the lock object)",
    )
    lock.acquire()
    try:
        yield lock.url
    finally:
        lock.release()


def put_whole(local: str | os.PathLike, url: str) -> str:
    """Upload one file: readers see the old object or the complete new one (a single PUT, or a
    resumable/multipart upload that the store makes visible only once complete)."""
    fs = filesystem(url)
    try:
        fs.put_file(os.fspath(local), url)
    except OSError as e:
        raise storage_error(url, e, "write") from e
    return url
