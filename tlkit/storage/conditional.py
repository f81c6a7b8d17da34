"""Create an object only if it is absent: the object store's own compare-and-set, for locks.

An object store has no ``flock`` and no ``O_EXCL``, but both stores refuse a write whose
precondition fails, atomically on the server: S3 ``PutObject`` with ``If-None-Match: *``
and a GCS upload with ``ifGenerationMatch=0`` succeed for exactly one of several writers racing
to create the same name; the others get HTTP 412, which s3fs and gcsfs both raise as
:class:`FileExistsError`. fsspec's ``pipe_file(mode="create")`` is not used: whether it sends
the precondition differs between clients and versions, so the request is made here explicitly.
"""

from __future__ import annotations

import contextlib

from tlkit.storage.remote import filesystem, scheme_of, storage_error


def _bucket_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return bucket, key


def create_if_absent(url: str, data: bytes) -> bool:
    """Write ``data`` to ``url`` only if no object has that name; True when this call created it.

    False means another writer's object is there (the store refused with 412). Other
    failures (no bucket, no access) raise the one-line errors of :func:`storage_error`.
    """
    fs = filesystem(url)
    bucket, key = _bucket_key(url)
    try:
        if scheme_of(url) == "s3":
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        else:
            from fsspec.asyn import sync
            from gcsfs.core import simple_upload

            # mode="create" is gcsfs' name for ifGenerationMatch=0 on the upload request.
            sync(fs.loop, simple_upload, fs, bucket, key, data, mode="create")
    except FileExistsError:
        return False
    except OSError as e:
        raise storage_error(url, e, "write") from e
    finally:
        with contextlib.suppress(Exception):
            fs.invalidate_cache(url)
    return True


def read_object(url: str) -> bytes | None:
    """The bytes of ``url``, or None when there is no such object."""
    fs = filesystem(url)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(url)
    try:
        return fs.cat_file(url)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise storage_error(url, e, "read") from e


def delete_object(url: str) -> None:
    """Delete ``url`` (nothing if it is already gone)."""
    fs = filesystem(url)
    try:
        fs.rm_file(url)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise storage_error(url, e, "delete") from e
    finally:
        with contextlib.suppress(Exception):
            fs.invalidate_cache(url)
