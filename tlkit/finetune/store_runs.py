"""Run directories on an object store: ``tlkit finetune --runs-dir gs://bucket/runs`` (or ``s3://``).

A store has no rename, no append and no ``flock``, and a ``.keras`` checkpoint is written by
Keras to a local file, so the run trains in a local *staging* copy and *publishes* it:

* staging folder: ``<cache>/store-runs/<hash of the runs URL>/NAME`` (``<cache>``: ``--cache-dir``,
  else ``$TLKIT_HOME``, else ``~/.cache/tlkit``). It is emptied and filled from the store at the
  start of every command, under the lock, and removed once the command's last publish is done,
  so the store is always the run's only truth;
* the lock: the object ``NAME/.tlkit.lock``, created only if absent (the store's conditional
  write, :class:`tlkit.storage.store_lock.StoreLock`), taken before anything is read;
* publishing: at the end of every epoch (after the local ``state.json``) and at the end of the
  command, every file that changed since the last publish is uploaded whole (a PUT is atomic),
  ``state.json`` last, then objects of files that no longer exist are deleted. A reader or a
  ``--resume`` never sees a ``state.json`` naming a checkpoint or a history row not yet on the
  store; ``state.json`` keeps the SHA-256 of the checkpoints, checked when the run is read back;
* ``--resume``: the run is downloaded into staging and the local resume carries on from it,
  publishing again as it goes.

Readers (``evaluate``, ``export``) get a run URL downloaded to a temporary folder
(:func:`fetched_run`). No Keras or TensorFlow at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tlkit.errors import ConfigError, NotFoundError, TlkitError
from tlkit.finetune.rundir import LOCK, STATE, is_temp_name
from tlkit.storage.remote import filesystem, is_remote, join, storage_error
from tlkit.storage.store_lock import StoreLock
from tlkit.storage.transfer import download_names, relative_names


def staging_root(runs_url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local folder that holds the staging copies of the runs under ``runs_url``."""
    root = Path(cache_dir or os.environ.get("TLKIT_HOME") or "~/.cache/tlkit").expanduser()
    key = hashlib.sha256(runs_url.rstrip("/").encode()).hexdigest()[:16]
    return root / "store-runs" / key


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _local_files(root: Path) -> dict[str, Path]:
    """The run's files by relative name: no lock, no temporary files."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != LOCK and not is_temp_name(p.name):
            out[rel] = p
    return out


def _remote_names(url: str) -> list[str]:
    """Relative names of the objects under ``url`` (the lock left out)."""
    return [n for n in relative_names(url, missing_ok=True) if n != LOCK]


def download_run(url: str, local: Path) -> list[str]:
    """Copy the run at ``url`` into the (new, empty) folder ``local``; returns the names copied.

    ``state.json`` first: a run published while this reads has its later files at least as new
    as the state read, never older (a checkpoint older than its state cannot come down)."""
    names = _remote_names(url)
    names = [n for n in names if n == STATE] + [n for n in names if n != STATE]
    download_names(url, names, local)
    return names


class Publisher:
    """Uploads what changed in the staging folder to the run's URL, ``state.json`` last."""

    def __init__(self, local: Path, url: str) -> None:
        self.local, self.url = local, url
        self.fs = filesystem(url)
        self.published: dict[str, tuple[int, int, int]] = {}  # name -> stamp of what the store holds
        self.remote: set[str] = set()  # names of the objects the store holds

    def adopt(self, names: list[str]) -> None:
        """The files just downloaded are what the store holds."""
        self.remote = set(names)
        self.published = {n: _stamp(self.local / n) for n in names if (self.local / n).is_file()}

    def _put(self, rel: str, path: Path) -> None:
        target = join(self.url, rel)
        try:
            self.fs.put_file(str(path), target)
        except OSError as e:
            raise storage_error(target, e, "write") from e
        self.published[rel] = _stamp(path)
        self.remote.add(rel)

    def __call__(self) -> int:
        """Publish a consistent state (nothing before the first ``state.json``); returns the uploads."""
        if not (self.local / STATE).is_file():
            return 0
        files = _local_files(self.local)
        changed = [r for r, p in files.items() if self.published.get(r) != _stamp(p)]
        order = [r for r in changed if r != STATE] + [r for r in changed if r == STATE]
        for rel in order:
            self._put(rel, files[rel])
        # Objects of files the run removed (a --force replacement's old files): after the state.
        for rel in sorted(self.remote - set(files)):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(join(self.url, rel))
            self.remote.discard(rel)
            self.published.pop(rel, None)
        return len(order)


def _clear_staging(local: Path) -> None:
    """Remove the staging copy of a run and any hidden sibling a local --force left (.NAME.*)."""
    shutil.rmtree(local, ignore_errors=True)
    if local.parent.is_dir():
        for sibling in local.parent.glob(f".{local.name}.*"):
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)


@contextlib.contextmanager
def store_session(
    runs_url: str, name: str, local: Path, *, break_lock: bool = False, log: Callable[[str], None] = print
) -> Iterator[Publisher]:
    """Lock the run at ``runs_url/name``, fill ``local`` from it, yield the publisher; at the end
    publish a last time (when a state exists), remove the local copy and release the lock."""
    url = join(runs_url, name)
    lock = StoreLock(join(url, LOCK), url)
    took_over = lock.acquire(break_lock=break_lock)
    try:
        if took_over is not None:
            from tlkit.storage.store_lock import describe

            log(f"took over the lock of {describe(took_over)} on {url}, which is no longer running")
        _clear_staging(local)
        local.mkdir(parents=True, exist_ok=True)
        publish = Publisher(local, url)
        publish.adopt(download_run(url, local))
        try:
            yield publish
        finally:
            publish()
            # Everything is on the store (the next command downloads it again): the copy is not kept.
            _clear_staging(local)
    finally:
        lock.release()


def check_store_config(cfg: Any) -> None:
    """Refuse what a run on a store does not do: a multi-worker job (its workers would each publish)."""
    if cfg.distribute == "multi-worker":
        raise ConfigError(
            f"--runs-dir {cfg.runs_dir}: a run on an object store is trained by one process; for a "
            f"multi-worker job use a --runs-dir all workers share as a folder"
        )


def finetune_on_store(
    run: Callable[..., dict[str, Any]], cfg: Any, *, break_lock: bool, quiet: bool, **kwargs: Any
) -> dict[str, Any]:
    """``run(cfg, **kwargs)`` (the local finetune) on the staging copy of a run on a store."""
    check_store_config(cfg)
    local = Path(cfg.run_dir())  # the staging copy (FinetuneConfig.run_dir maps a store URL there)
    url = join(cfg.runs_dir, local.name)
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    try:
        with store_session(cfg.runs_dir, local.name, local, break_lock=break_lock, log=say) as publish:
            callbacks = _WithPublish(list(kwargs.pop("callbacks", ())), publish)
            metrics = run(cfg, quiet=quiet, callbacks=callbacks, **kwargs)
    except TlkitError as exc:
        _name_url(exc, local, url)
        raise
    say(f"published to {url}")
    return metrics


class _WithPublish:
    """The caller's callbacks, then one that publishes at each epoch's end (after the run recorder's
    state.json). Made when training starts: Keras is imported only if a run is trained at all."""

    def __init__(self, callbacks: list, publish: Publisher) -> None:
        self.callbacks, self.publish = callbacks, publish

    def __iter__(self) -> Iterator[Any]:
        from tlkit.finetune.recorder import EpochEndHook

        return iter([*self.callbacks, EpochEndHook(self.publish)])


def _name_url(exc: TlkitError, local: Path, url: str) -> None:
    """Make an error about the staging copy name the run's URL, which is what the user gave."""
    exc.args = tuple(a.replace(str(local), url) if isinstance(a, str) else a for a in exc.args)
    for attr in ("problem", "fix"):
        if isinstance(getattr(exc, attr, None), str):
            setattr(exc, attr, getattr(exc, attr).replace(str(local), url))


@contextlib.contextmanager
def fetched_run(path: str) -> Iterator[str]:
    """A local folder holding the run at ``path``: a store URL is downloaded to a temporary folder
    (removed afterwards); a local path is yielded as it is."""
    if not is_remote(path):
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="tlkit-run-"))
    try:
        local = tmp / path.rstrip("/").rsplit("/", 1)[-1]
        local.mkdir()
        if not download_run(path.rstrip("/"), local):
            raise NotFoundError(f"run directory {path} does not exist (no objects under it on the store)")
        yield str(local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
