"""``tlkit export --out gs://...`` / ``s3://...``: a version built and verified locally, then published.

TensorFlow Serving loads a version once its ``saved_model.pb`` is there. A store has no atomic rename
of a folder, so the version (SavedModel, ``tlkit.json``, ``assets/labels.txt``, ``tflite/``, ``onnx/``)
is written and verified in a local staging folder exactly as a local export, then uploaded with
``saved_model.pb`` last (:func:`tlkit.storage.transfer.upload_tree`): a watcher never sees half a
version. The version number is the highest on the store + 1 (any numbered prefix counts, even one an
interrupted upload left without ``saved_model.pb``: versions are never overwritten), picked while
this export holds the model directory's lock object (:mod:`tlkit.storage.outputs`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tlkit.errors import AlreadyExistsError
from tlkit.storage.outputs import remote_output_lock
from tlkit.storage.remote import filesystem, join, storage_error
from tlkit.storage.transfer import upload_tree

MARKER = "saved_model.pb"


def remote_versions(url: str) -> list[int]:
    """Integer version prefixes under model directory ``url`` on the store, sorted."""
    fs = filesystem(url)
    try:
        listed = fs.ls(url.rstrip("/"), detail=False, refresh=True)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise storage_error(url, e, "list") from e
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in listed)
    return sorted(int(n) for n in names if n.isdigit())


@contextlib.contextmanager
def staged_export(url: str, version: int | None) -> Iterator[tuple[Path, int]]:
    """Lock model directory ``url``, pick the version, yield (a local model directory, the version) to
    export into, then upload ``LOCAL/N`` to ``URL/N`` with ``saved_model.pb`` last."""
    url = url.rstrip("/")
    with remote_output_lock(url, inside=True):  # also the bucket check: before TensorFlow loads
        versions = remote_versions(url)
        if version is not None and version in versions:
            raise AlreadyExistsError(
                f"{join(url, str(version))} already exists and versions are never overwritten; omit --version for "
                f"the next free one ({versions[-1] + 1})"
            )
        n = version if version is not None else (versions[-1] + 1 if versions else 1)
        with tempfile.TemporaryDirectory(prefix="tlkit-export-") as tmp:
            local = Path(tmp) / "model"
            yield local, n
            if (local / str(n) / MARKER).is_file():  # a refused export (verification, --strict) wrote nothing
                upload_tree(local / str(n), join(url, str(n)), last=[MARKER])
