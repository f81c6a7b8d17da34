"""Which paths live on an object store, the client that reaches them, and the one-line errors.

tlkit reaches ``gs://`` through gcsfs and ``s3://`` through s3fs, both fsspec file systems
(the optional extra ``tlkit[cloud]``). Why fsspec rather than TensorFlow's own file system:
TensorFlow still reads ``gs://`` but left ``s3://`` to tensorflow-io, a separate package tied to
TF versions; fsspec covers both stores with one API that pandas and Dask use, and both clients take
their endpoint from the standard variables (``STORAGE_EMULATOR_HOST``, ``AWS_ENDPOINT_URL``),
so a test against a server on loopback runs the same code as a real bucket.

``file://`` URLs and plain paths are local; :func:`local_path` turns the first into the second.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from tlkit.errors import ConfigError, DataError, NotFoundError

REMOTE_SCHEMES = ("gs", "s3")
CLOUD_EXTRA = 'pip install "tlkit[cloud]"'


def scheme_of(path: str | os.PathLike) -> str:
    """The URL scheme of ``path`` (``"gs"``, ``"s3"``, ``"file"``), or ``""`` for a plain path."""
    text = os.fspath(path)
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isalnum() else ""


def is_remote(path: str | os.PathLike) -> bool:
    """True for ``gs://`` and ``s3://`` paths (``file://`` and plain paths are local)."""
    return scheme_of(path) in REMOTE_SCHEMES


def local_path(path: str | os.PathLike) -> str:
    """A local path for ``path``: ``file:///a/b`` becomes ``/a/b``; plain paths are returned as they are."""
    text = os.fspath(path)
    if scheme_of(text) == "file":
        return text[len("file://") :]
    if is_remote(text):
        raise ConfigError(f"{text} is on an object store, not a local path")
    return text


def check_scheme(path: str | os.PathLike) -> None:
    """Refuse a URL scheme tlkit does not handle (``http://``, ``hdfs://``, ...), naming the ones it does."""
    scheme = scheme_of(path)
    if scheme and scheme != "file" and scheme not in REMOTE_SCHEMES:
        raise ConfigError(
            f"{os.fspath(path)}: tlkit reads and writes gs://, s3://, file:// and local paths, not {scheme}://"
        )


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a URL or a local path (URLs always use ``/``)."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(local_path(base), *parts)


@functools.cache
def _filesystem(scheme: str, emulator: str | None, endpoint: str | None) -> Any:
    try:
        if scheme == "gs":
            # gcsfs.core's class, not the package default: since 2026.x the default first asks the
            # Storage Control gRPC API for the bucket's layout, which a real bucket answers but an
            # emulator cannot (each first call then waits 60 s). tlkit needs plain objects only.
            from gcsfs.core import GCSFileSystem

            # An emulator takes no credentials; a real bucket uses Google's default credentials.
            return GCSFileSystem(token="anon") if emulator else GCSFileSystem()
        import s3fs  # botocore reads AWS_ENDPOINT_URL itself

        return s3fs.S3FileSystem()
    except ImportError as e:
        missing = e.name or "a client"
        raise ConfigError(f"{scheme}:// paths need the object-store clients ({missing} missing): {CLOUD_EXTRA}") from e


def filesystem(path: str | os.PathLike) -> Any:
    """The fsspec file system for a ``gs://`` or ``s3://`` path (one per scheme and endpoint, reused)."""
    scheme = scheme_of(path)
    if scheme not in REMOTE_SCHEMES:
        raise ConfigError(f"{os.fspath(path)} is not an object-store path (gs:// or s3://)")
    return _filesystem(scheme, os.environ.get("STORAGE_EMULATOR_HOST"), os.environ.get("AWS_ENDPOINT_URL"))


def storage_error(path: str | os.PathLike, error: BaseException, doing: str = "reach") -> Exception:
    """One-line tlkit error for a store that says no: a missing bucket or object, refused access, no route.

    Anything else is returned as it is (a bug shows its traceback).
    """
    text = os.fspath(path)
    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    if isinstance(error, FileNotFoundError):
        return NotFoundError(f"{text}: not found on the object store ({detail}); check the bucket and the path")
    if isinstance(error, PermissionError):
        return DataError(f"{text}: the object store refused access ({detail}); check the credentials")
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return DataError(f"cannot {doing} {text} ({detail})")
    return error
