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


def _precondition_failed(error: OSError) -> bool:
    """A 412 that the client did not raise as FileExistsError (s3fs 2026.9 turns a failed
    ``If-Match`` into ``OSError(EINVAL)``; the botocore error it wraps says PreconditionFailed)."""
    cause = error.__cause__ or error.__context__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause is not None else None
    return code == "PreconditionFailed"


def read_versioned(url: str) -> tuple[bytes, str] | None:
    """(bytes, version) of ``url``, or None when absent: the version (S3 ETag, GCS generation) is
    read *before* the bytes, so a change in between makes :func:`replace_if_unchanged` refuse."""
    fs = filesystem(url)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(url)
    try:
        info = fs.info(url)
        version = str(info.get("ETag") if scheme_of(url) == "s3" else info.get("generation"))
        return fs.cat_file(url), version
    except FileNotFoundError:
        return None
    except OSError as e:
        raise storage_error(url, e, "read") from e


def replace_if_unchanged(url: str, data: bytes, version: str) -> bool:
    """Overwrite ``url`` only if it is still at ``version`` (S3 ``If-Match: ETag``, GCS
    ``ifGenerationMatch``): of several processes replacing the same object, one succeeds."""
    fs = filesystem(url)
    bucket, key = _bucket_key(url)
    try:
        if scheme_of(url) == "s3":
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=version)
        else:
            import json

            # A multipart upload (object metadata, then the bytes), as gcsfs' own simple upload sends.
            meta = json.dumps({"name": key})
            body = (
                (
                    f"--==0==\nContent-Type: application/json; charset=UTF-8\n\n{meta}\n--==0==\n"
                    "Content-Type: application/octet-stream\n\n"
                ).encode()
                + data
                + b"\n--==0==--"
            )
            fs.call(
                "POST",
                f"{fs._location}/upload/storage/v1/b/{bucket}/o",
                uploadType="multipart",
                headers={"Content-Type": 'multipart/related; boundary="==0=="'},
                ifGenerationMatch=version,
                data=body,
            )
    except (FileExistsError, FileNotFoundError):
        return False  # 412: changed since it was read; 404: deleted since
    except OSError as e:
        if _precondition_failed(e):
            return False
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
