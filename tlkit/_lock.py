"""Exclusive locks on outputs: one tlkit process at a time per run directory, features file or
model directory; a lock left by a dead process is taken over.

:class:`FileLock` holds a lock file (the owner's PID and host, for messages) with ``flock``, which
the kernel drops when its process dies; where ``flock`` is missing it falls back to asking whether
the PID is alive on this host. :func:`output_lock` wraps it for a command's ``--out``: taken at the
start (before any model work), so a second process on the same output is refused at once, naming
the holder. No Keras or TensorFlow at import.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from tlkit._io import pid_alive
from tlkit.errors import OutputInUseError, TlkitError

try:  # flock is POSIX; elsewhere the lock falls back to "is the PID alive" on this host
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FileLock:
    """An exclusive lock: a file holding ``{"pid", "host"}``, locked with flock.

    The kernel drops a flock when its process dies, so a lock file left by a killed
    process is recognised as stale and taken over; the PID in it is for messages.
    Subclasses say what is locked in :meth:`busy_error` and which error class is raised (``error``).
    """

    error: type[TlkitError] = OutputInUseError

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def describe(info: dict) -> str:
        return f"PID {info.get('pid', '?')} on {info.get('host', '?')}"

    def busy_error(self, info: dict) -> TlkitError:
        """The error raised when a live process holds the lock (``info``: its PID and host)."""
        return self.error(
            f"{self.path.parent} is in use by another tlkit process ({self.describe(info)}); "
            f"wait for it to finish or stop it"
        )

    def holder(self) -> dict | None:
        """The live owner's ``{"pid", "host"}``, or None (no lock file, or a stale one). Writes nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            info = self._read(fd)
            return info if self._held_by_other(fd, info, probe=True) else None
        finally:
            os.close(fd)

    def _held_by_other(self, fd: int, info: dict, probe: bool) -> bool:
        """Try to flock ``fd``; True when another process holds it (``probe``: unlock again)."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
            else:
                if probe:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return False
        # No flock here (some network filesystems): trust the PID when it is on this host.
        pid = info.get("pid")
        return (
            isinstance(pid, int) and pid != os.getpid() and info.get("host") == socket.gethostname() and pid_alive(pid)
        )

    def acquire(self) -> dict | None:
        """Take the lock; returns the previous (dead) owner's info when a stale lock was taken over.

        Raises :meth:`busy_error` naming the owner when a live process holds it.
        """
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            info = self._read(fd)
            try:
                if self._held_by_other(fd, info, probe=False):
                    raise self.busy_error(info)
                # The file may have been unlinked (its owner released it) between open and flock.
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
            self.fd = fd
            return info or None
        raise self.error(f"could not lock {self.path}: it keeps changing; is another tlkit process starting?")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


class _OutputLock(FileLock):
    def __init__(self, path: Path, target: Path, flag: str) -> None:
        super().__init__(path)
        self.target, self.flag = target, flag

    def busy_error(self, info: dict) -> TlkitError:
        return OutputInUseError(
            f"{self.target} is in use by another tlkit process ({self.describe(info)}); wait for it to "
            f"finish or stop it, or pass another {self.flag}"
        )


# Locks this process holds, by lock file: taking one again (a command, then the library function
# it calls) nests instead of conflicting with itself (flock is per open file, even in one process).
_HELD: dict[str, int] = {}


def output_lock_path(target: str | os.PathLike, *, inside: bool) -> Path:
    """The lock file of ``target``: ``TARGET/.tlkit.lock`` for a directory (``inside``), else
    ``.NAME.tlkit.lock`` beside the file."""
    target = Path(target)
    return target / ".tlkit.lock" if inside else target.with_name(f".{target.name}.tlkit.lock")


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, inside: bool = False, flag: str = "--out") -> Iterator[dict | None]:
    """Hold the lock on output ``target`` while the block runs; yields a dead owner's info if its
    stale lock was taken over.

    ``inside``: ``target`` is a directory and the lock file goes in it, else beside it. Folders
    created to hold the lock file are removed again when the block leaves them empty, so a
    command refused later leaves nothing behind. A live owner raises
    :class:`~tlkit.errors.OutputInUseError` (one line: the target, its PID and host, ``flag``).
    """
    path = output_lock_path(target, inside=inside)
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield None
        finally:
            _HELD[key] -= 1
        return
    created: list[Path] = []
    for p in reversed([path.parent, *path.parent.parents]):
        if not p.exists():
            created.append(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _OutputLock(path, Path(target), flag)
    try:
        took_over = lock.acquire()
        _HELD[key] = 1
        try:
            yield took_over
        finally:
            del _HELD[key]
            lock.release()
    finally:
        for p in reversed(created):  # deepest first; a folder that holds anything stays
            with contextlib.suppress(OSError):
                p.rmdir()
