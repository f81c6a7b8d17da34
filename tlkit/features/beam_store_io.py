"""``tlkit extract --runner beam`` on a cluster runner (Dataflow) with ``gs://`` paths: the store I/O.

A cluster's workers share no disk with the driver, so on this path nothing goes through local files:

* the tap model's weights: the driver saves them to a temporary file, uploads them to a hidden
  object beside the output (``.OUT.tap_model.weights.h5``, deleted when the pipeline ends) and each
  worker's ``load_model`` downloads that object to its own temporary file before ``load_weights``;
* the images: each worker reads its objects' bytes from the bucket (:func:`read_image`) and checks
  and decodes them exactly as the local preflight and training pipeline do;
* the Parquet shards and ``OUT.skipped.csv``: Beam's own ``WriteToParquet`` / ``WriteToText`` write
  them straight to the ``gs://`` prefix with Beam's GCS file system (``pip install "tlkit[dataflow]"``):
  temporary files first, renamed to their final names when every bundle is written.

Used when ``--beam-args`` names a runner other than Beam's local ones and ``--out`` is ``gs://``, or
when ``TLKIT_BEAM_REMOTE_IO=1`` (how the tests run this same path on the local ``FnApiRunner``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from tlkit.errors import ConfigError

FORCE_ENV = "TLKIT_BEAM_REMOTE_IO"


def forced() -> bool:
    """Whether ``TLKIT_BEAM_REMOTE_IO=1`` asks for the cluster I/O on a local runner."""
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def require_beam_gcs() -> None:
    """Beam's ``gs://`` file system, or one line saying which extra installs it."""
    try:
        import apache_beam.io.gcp.gcsfilesystem  # noqa: F401
        import google.cloud.storage  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a Beam cluster runner with --out gs://... writes through Beam's GCS file system: "
            'pip install "tlkit[dataflow]"'
        ) from None


def weights_url(out_url: str) -> str:
    """The hidden object beside ``out_url`` that carries the tap model's weights to the workers."""
    head, _, name = out_url.rpartition("/")
    return f"{head}/.{name}.tap_model.weights.h5"


def upload_weights(model: Any, url: str) -> None:
    """Save ``model``'s weights to a temporary file and upload it whole to ``url``."""
    from tlkit.storage.outputs import put_whole

    with tempfile.TemporaryDirectory(prefix="tlkit-tap-") as tmp:
        path = os.path.join(tmp, "tap_model.weights.h5")  # Keras wants this suffix
        model.save_weights(path)
        put_whole(path, url)


@contextlib.contextmanager
def local_weights(ref: str) -> Iterator[str]:
    """A local path holding the weights at ``ref``: ``ref`` itself, or a temporary download of the object."""
    from tlkit.storage.remote import filesystem, is_remote, storage_error

    if not is_remote(ref):
        yield ref
        return
    with tempfile.TemporaryDirectory(prefix="tlkit-tap-") as tmp:
        path = os.path.join(tmp, "tap_model.weights.h5")
        try:
            filesystem(ref).get_file(ref, path)
        except OSError as e:
            raise storage_error(ref, e, "read") from e
        yield path


def read_image(path: str) -> tuple[dict[str, Any], bytes | None]:
    """The preflight's verdict on the object ``path`` and its bytes (None when it is not usable)."""
    from tlkit.data.remote_checks import inspect_data
    from tlkit.storage.objects import read_many

    data = read_many([path])[0]
    info = inspect_data(path, data, thorough=True)  # decoded in full, as inspect_file does locally
    return info, (data if info["ok"] else None)


def delete_quietly(url: str) -> None:
    """Remove the object ``url`` if it is there (the weights object; old shards after ``--force``)."""
    from tlkit.storage.remote import filesystem

    with contextlib.suppress(FileNotFoundError):
        filesystem(url).rm_file(url)


def count_rows(shards: list[str]) -> int:
    """Rows of the Parquet shards on the store, from their footers."""
    import pyarrow.parquet as pq

    from tlkit.storage.remote import filesystem

    total = 0
    for url in shards:
        with filesystem(url).open(url, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def count_skipped(url: str) -> int:
    """Lines of ``OUT.skipped.csv`` on the store, less its header (0 when it is not there)."""
    from tlkit.storage.remote import filesystem

    fs = filesystem(url)
    fs.invalidate_cache()
    try:
        return max(0, len(fs.cat_file(url).decode().splitlines()) - 1)
    except FileNotFoundError:
        return 0
