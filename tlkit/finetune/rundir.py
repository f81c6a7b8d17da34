"""The run directory: one object that owns ``runs/NAME/`` (layout, checkpoint choice, files, lock).

A run directory cannot lose work:

* its name is one path component (no separators, not ``.``/``..``, not absolute, not hidden);
* nothing in the runs folder is created or replaced before :meth:`RunDir.plan` has
  accepted the request (and the caller has checked everything else that can fail);
* ``--force`` replaces only a tlkit run (or an empty folder): the old run is moved
  aside to a hidden sibling and deleted only once the new run has written its first
  checkpoint (:meth:`RunDir.commit`); a failure or interrupt before that puts it back,
  and a process killed before that has it put back by the next command on the name;
* a lock file (``.tlkit.lock``, the owner's PID and host) held with ``flock`` refuses a
  second process on the same run; a lock left by a dead process is taken over
  (:class:`tlkit.finetune.runlock.RunLock`);
* temporary files (``.NAME.tmp``, ``.NAME.tmp.keras``) never survive: removed on
  interrupt and, after a kill, by the next run or resume.
* ``state.json`` keeps the size and SHA-256 of the checkpoints, ``config.json``,
  ``labels.json`` and ``history.csv`` it vouches for; a damaged file is named when it is
  read, before any training (:mod:`tlkit.finetune.run_files`).

No Keras or TensorFlow at import (the CLI checks a run directory before starting them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from tlkit._io import move_into_place, write_json_atomic, write_text_atomic
from tlkit.errors import AlreadyExistsError, NotFoundError, RunDirError
from tlkit.finetune import run_files
from tlkit.finetune.runlock import RunLock

LOCK = ".tlkit.lock"
CONFIG, LABELS, STATE, HISTORY = "config.json", "labels.json", "state.json", "history.csv"
BEST, LAST, METRICS, LOG = "best.keras", "last.keras", "metrics.json", "train.log"
DATA_REPORT_JSON, DATA_REPORT_TXT, SKIPPED = "data_report.json", "data_report.txt", "skipped.csv"
CURVES, CONFUSION, LR_FIND = "curves.png", "confusion.png", "lr_find.png"
THRESHOLDS, PER_CLASS = "thresholds.json", "per_class.png"  # multi-label runs (tlkit.finetune.multilabel)
TENSORBOARD = "tensorboard"  # --tensorboard: the event files (tlkit.finetune.tensorboard_log)
CHECKPOINTS = (BEST, LAST)  # the order a loader prefers them in
# Any of these means epochs were trained: the run is worth resuming and only --force replaces it.
STARTED_MARKERS = (LAST, BEST, STATE, METRICS)


def check_run_name(name: Any) -> str:
    """A run name is one ordinary path component; anything else raises :class:`RunDirError`."""
    accepted = "accepted: one folder name such as 'myrun' (no '/', not '.' or '..', not starting with '.')"
    if not isinstance(name, str) or not name.strip():
        raise RunDirError(f"--name {name!r} is empty; {accepted}")
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in name for s in seps) or os.path.isabs(name) or "\0" in name:
        raise RunDirError(
            f"--name {name!r} is a path, not a run name; {accepted}; use --runs-dir to choose the parent folder"
        )
    if name in (".", ".."):
        raise RunDirError(f"--name {name!r} names a folder, not a run; {accepted}")
    if name.startswith("."):
        # Hidden siblings are tlkit's (a run moved aside while --force replaces it).
        raise RunDirError(f"--name {name!r} starts with '.', which tlkit keeps for its own hidden folders; {accepted}")
    return name


def is_temp_name(name: str) -> bool:
    """Temporary files of atomic writes: ``.X.tmp`` (fsutil), ``.X.tmp.keras`` (checkpoints),
    ``.X.tmp.png`` (plots)."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp." in name)


class RunDir:
    """A run directory ``runs_dir/name`` and everything tlkit reads or writes in it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock: RunLock | None = None
        self._old_lock: RunLock | None = None  # held on the run moved aside, so it counts as live
        self._backup: Path | None = None
        self.took_over: dict | None = None  # the dead owner whose stale lock was taken over
        self._force = False  # what plan() was asked: may a run with epochs be replaced?

    @classmethod
    def at(cls, runs_dir: str | os.PathLike, name: str) -> RunDir:
        """The run ``name`` under ``runs_dir``, both checked (nothing created)."""
        runs = Path(runs_dir)
        if runs.exists() and not runs.is_dir():
            raise RunDirError(f"--runs-dir {runs} is a file, not a folder; pass a folder (default: runs)")
        return cls(runs / check_run_name(name))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- layout and checkpoint choice --

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tlkit-replaced")

    def checkpoint(self) -> Path | None:
        """The checkpoint to evaluate, export or serve: ``best.keras``, else ``last.keras``, else None."""
        return next((self.path / n for n in CHECKPOINTS if (self.path / n).is_file()), None)

    def require_checkpoint(self) -> Path:
        ckpt = self.checkpoint()
        if ckpt is None:
            raise NotFoundError(f"{self.path} has no best.keras or last.keras: was the run started?")
        return ckpt

    def load_checkpoint(self, path: Path | None = None, **kwargs: Any) -> Any:
        """Load a checkpoint (default: :meth:`checkpoint`) with tlkit's custom layers registered.

        One that is damaged raises :class:`~tlkit.finetune.run_files.DamagedFileError` naming it."""
        path = Path(path or self.require_checkpoint())
        if not path.is_file():
            raise NotFoundError(f"{path} does not exist")
        return run_files.load_checkpoint(path, **kwargs)

    # -- files --

    def read_json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run (``default`` if absent); one that is not JSON raises
        :class:`~tlkit.finetune.run_files.DamagedFileError` naming it and the fix."""
        p = self.path / name
        return run_files.load_json(p) if p.is_file() else default

    def write_json(self, name: str, data: Any) -> Path:
        path = write_json_atomic(self.path / name, data)
        if name in run_files.CHECKSUMMED and name != STATE:
            self._refresh_checksums()
        return path

    def _refresh_checksums(self) -> None:
        """state.json's checksums again, after a file it records was rewritten (config, labels)."""
        state = run_files.stored_state(self.path)  # none before the first epoch; a damaged one: its reader says so
        if state is not None and "files" in state:
            self.write_state(state)

    def write_text(self, name: str, text: str) -> Path:
        return write_text_atomic(self.path / name, text)

    def read_config(self) -> dict:
        return self.read_json(CONFIG, {}) or {}

    def read_state(self) -> dict:
        return self.read_json(STATE, {}) or {}

    def write_state(self, state: dict) -> Path:
        """``state.json``, with the size and SHA-256 of the files it vouches for
        (:data:`~tlkit.finetune.run_files.CHECKSUMMED`), taken now that they are complete."""
        previous = (run_files.stored_state(self.path) or {}).get("files")
        files = run_files.digests(self.path, previous)
        return write_json_atomic(self.path / STATE, {**state, "files": files})

    def read_labels(self) -> list | None:
        return self.read_json(LABELS)

    def is_run(self) -> bool:
        """Whether the folder is a tlkit run: a ``config.json`` naming its data and base."""
        try:
            cfg = self.read_config()
        except (OSError, ValueError):
            return False
        return isinstance(cfg, dict) and "data" in cfg and "base" in cfg

    def is_started(self) -> bool:
        """Whether epochs were trained (a checkpoint, state or metrics exists)."""
        return any((self.path / n).exists() for n in STARTED_MARKERS)

    def user_entries(self) -> list[str]:
        """Entries other than the lock and temporary files (what makes a folder non-empty)."""
        if not self.path.is_dir():
            return []
        return sorted(e.name for e in self.path.iterdir() if e.name != LOCK and not is_temp_name(e.name))

    def clean_temp(self) -> list[str]:
        """Remove temporary files left by an interrupted or killed write; returns their names."""
        removed = []
        if self.path.is_dir():
            for e in self.path.iterdir():
                if is_temp_name(e.name) and e.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        e.unlink()
                    removed.append(e.name)
        return sorted(removed)

    # -- life cycle: plan (no writes), acquire, commit, close --

    def holder(self) -> dict | None:
        """The live process using this run, or None."""
        return RunLock(self.path / LOCK).holder() if self.path.is_dir() else None

    def plan(self, *, resume: bool, force: bool) -> str:
        """Decide what starting this run does, or raise when it may not. Writes nothing, except
        to finish a replacement that a killed process left half done (see :meth:`_recover_pending`).

        Returns ``"resume"``, ``"create"`` (absent or empty folder) or ``"replace"``
        (``--force`` on a run, or a run that never finished an epoch).
        """
        p = self.path
        self._force = force
        if p.exists() and not p.is_dir():
            raise RunDirError(f"{p} is a file, not a run directory; pass another --name or --runs-dir")
        owner = self._recover_pending() or self.holder()
        if owner is not None:
            raise RunDirError(
                f"{p} is in use by another tlkit process ({RunLock.describe(owner)}); wait for it "
                f"to finish or stop it, or pass --name for another run"
            )
        if resume:
            if not p.exists():
                raise NotFoundError(f"nothing to resume: {p} does not exist; start the run without --resume")
            if not self.is_run():
                if (p / CONFIG).is_file():
                    self.read_config()  # a damaged config.json is named as such
                raise RunDirError(
                    f"cannot resume {p}: it is not a tlkit run (no config.json with its data and "
                    f"base); start a new run with another --name"
                )
            return "resume"
        entries = self.user_entries()
        if not entries:
            return "create"
        if not self.is_run():
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise (RunDirError if force else AlreadyExistsError)(
                f"{p} exists and is not a tlkit run (it holds {shown}); "
                + ("--force only replaces tlkit runs or empty folders; " if force else "")
                + "pass --name for a new run, or move that folder away"
            )
        if not self.is_started():
            return "replace"  # an earlier attempt that failed before its first epoch: nothing to lose
        if not force:
            raise AlreadyExistsError(
                f"run directory {p} already exists; pass --resume to continue it, --force "
                f"to replace it, or --name for a new run"
            )
        return "replace"

    def _recover_pending(self) -> dict | None:
        """Finish a replacement whose process died: keep the new run if it has a checkpoint,
        else put the old one back. Returns the owner when a live process is still replacing."""
        backup = self.backup_path
        if not backup.is_dir():
            return None
        # Held by a live replacer until its first checkpoint; also serialises two recoverers.
        live = RunLock(backup / LOCK).holder()
        if live is not None:
            return live
        guard = RunLock(backup / LOCK)
        try:
            guard.acquire()
        except RunDirError:
            return RunLock(backup / LOCK).holder() or {}
        try:
            live = self.holder()
            if live is not None:
                return live
            if self.path.is_dir() and self.is_started():
                shutil.rmtree(backup, ignore_errors=True)  # the new run got its first checkpoint
                return None
            self._discard_new()
            move_into_place(backup, self.path)
            guard.path = self.path / LOCK  # so that release removes the lock file it moved along
            return None
        finally:
            guard.release()

    def _discard_new(self) -> None:
        """Delete the folder at ``path`` (a replacing run that never wrote a checkpoint)."""
        if self.path.exists():
            discard = self.path.with_name(f".{self.path.name}.tlkit-discard-{os.getpid()}")
            move_into_place(self.path, discard)
            shutil.rmtree(discard, ignore_errors=True)

    def acquire(self, plan: str) -> None:
        """Lock the run and make the folder ready for ``plan`` (see :meth:`plan`).

        Call this only once everything else that can fail has been checked.
        """
        p = self.path
        try:
            if plan == "replace":
                self._old_lock = RunLock(p / LOCK)
                self.took_over = self._old_lock.acquire()
                self._check_plan(plan)
                move_into_place(p, self.backup_path)
                self._backup = self.backup_path
                try:
                    p.mkdir()
                except FileExistsError:
                    backup, self._backup = self._backup, None  # not ours to discard: keep the old run aside
                    raise RunDirError(
                        f"another process created {p} while this run was replacing it; the old run is kept in {backup}"
                    ) from None
            else:
                p.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(p / LOCK)
            self.took_over = self._lock.acquire() or self.took_over
            if plan != "replace":
                self._check_plan(plan)
        except BaseException:
            self.close()
            raise
        self.clean_temp()

    def _check_plan(self, plan: str) -> None:
        """Under the lock: the folder is still what :meth:`plan` saw (no other process got there first)."""
        if plan == "resume":
            ok = self.is_run()
        elif plan == "create":
            ok = not self.user_entries()
        else:  # without --force, only a run that never finished an epoch is replaced
            ok = self.is_run() and (self._force or not self.is_started())
        if not ok:
            raise RunDirError(
                f"{self.path} changed while this run was starting (another tlkit process?); run the command again"
            )

    def commit(self) -> None:
        """The new run has its first checkpoint: delete the run it replaces. Idempotent."""
        if self._backup is not None:
            shutil.rmtree(self._backup, ignore_errors=True)
            self._backup = None
        if self._old_lock is not None:
            self._old_lock.release()
            self._old_lock = None

    def close(self) -> None:
        """Release the run: put a replaced run back if the new one wrote no checkpoint, remove
        temporary files, drop the locks. Safe to call more than once, and after a failure."""
        try:
            self.clean_temp()
            if self._backup is not None and not self.is_started():
                self._discard_new()
                move_into_place(self._backup, self.path)
                self._backup = None
            else:
                self.commit()
        finally:
            # The new lock first: its file went with the discarded folder, or is the run's own.
            for attr in ("_lock", "_old_lock"):
                lock = getattr(self, attr)
                if lock is not None:
                    lock.release()
                    setattr(self, attr, None)
