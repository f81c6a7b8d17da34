"""``tlkit extract --out gs://...`` / ``s3://...``: built in a local staging folder, published whole.

The extraction (local runner or Beam) writes into a private temporary folder exactly as it writes a
local ``--out``; only a finished output is uploaded, one PUT per file, so a reader of the store sees
the previous output or the complete new one, never a partial file:

* local runner: ``OUT.skipped.csv`` (or its removal), then the features file itself;
* Beam: every ``OUT-SSSSS-of-NNNNN.parquet`` shard (each whole; a listing during the upload can show
  fewer than NNNNN of them, which their names reveal), then ``OUT.skipped.csv``; with ``--force``
  the old shards the new set does not overwrite are deleted last.

``--force`` replaces the output once the new one is complete (as locally). ``--resume`` (local runner)
downloads the finished file, extracts the images it lacks and uploads the whole file again; the parts
of an interrupted run are not kept (they live in the temporary folder, removed on exit), so an
interrupted remote extraction starts over. One writer at a time: a lock object beside the output,
created with the store's conditional write (:mod:`tlkit.storage.outputs`), taken before any model work.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tlkit.errors import AlreadyExistsError, ConfigError, DataError
from tlkit.storage.outputs import put_whole, remote_output_lock
from tlkit.storage.remote import filesystem, storage_error


def _shard_pattern(name: str) -> re.Pattern:
    stem = re.escape(name[: -len(".parquet")])
    return re.compile(rf"{stem}-\d{{5}}-of-\d{{5}}\.parquet")


def remote_shards(url: str) -> list[str]:
    """The ``STEM-SSSSS-of-NNNNN.parquet`` shards beside ``url`` on the store (full URLs, sorted)."""
    fs = filesystem(url)
    head, _, name = url.rpartition("/")
    scheme = url.split("://", 1)[0]
    try:
        listed = fs.ls(head, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise storage_error(head, e, "list") from e
    pattern = _shard_pattern(name)
    return sorted(f"{scheme}://{p.split('://')[-1]}" for p in listed if pattern.fullmatch(p.rsplit("/", 1)[-1]))


def _exists(fs, url: str) -> bool:
    try:
        return fs.exists(url)
    except OSError as e:
        raise storage_error(url, e, "reach") from e


@contextlib.contextmanager
def staged_extract_out(url: str, *, beam: bool, resume: bool, force: bool) -> Iterator[Path]:
    """Lock ``url``, refuse what a local ``--out`` would refuse, yield a local path to extract into,
    and publish what the extraction finished there (nothing when it raised)."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if beam and not name.lower().endswith(".parquet"):
        raise ConfigError(f"the Beam runner writes Parquet shards: --out must end in .parquet, got {name!r}")
    if not beam and not name.lower().endswith((".parquet", ".npz")):
        raise DataError(f"output must end in .parquet or .npz, got {name!r}")
    with remote_output_lock(url) as _lock:  # checks the bucket too: a missing one is one line, nothing written
        fs = filesystem(url)
        old_shards = remote_shards(url) if beam else []
        if beam and old_shards and not force:
            raise ConfigError(f"{old_shards[0]} exists; pass --force to replace the shards of {url}")
        exists = not beam and _exists(fs, url)
        if exists and not (resume or force):
            raise AlreadyExistsError(f"{url} exists; pass --resume to add missing images or --force to replace it")
        with tempfile.TemporaryDirectory(prefix="tlkit-extract-") as tmp:
            local = Path(tmp) / name
            if resume and exists:  # the finished file is the starting point, as locally
                try:
                    fs.get_file(url, str(local))
                except OSError as e:
                    raise storage_error(url, e, "read") from e
            yield local
            _publish(url, local, beam=beam, old_shards=old_shards)


def _publish(url: str, local: Path, *, beam: bool, old_shards: list[str]) -> None:
    fs = filesystem(url)
    head = url.rpartition("/")[0]
    skipped = local.with_name(local.name + ".skipped.csv")
    if beam:
        new = sorted(local.parent.glob(f"{local.stem}-*-of-*.parquet"))
        for shard in new:
            put_whole(shard, f"{head}/{shard.name}")
    elif not local.exists():
        return  # stopped before the end: nothing finished to publish
    if skipped.exists():
        put_whole(skipped, url + ".skipped.csv")
    else:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(url + ".skipped.csv")  # an earlier extraction's list, not this one's
    if beam:
        fresh = {f"{head}/{s.name}" for s in new}
        for stale in old_shards:
            if stale not in fresh:
                fs.rm_file(stale)
    else:
        put_whole(local, url)  # last: the file readers look for
