"""The lock on a run directory: one process at a time, and a lock left by a dead process is taken over.

:class:`RunLock` holds ``.tlkit.lock`` (the owner's PID and host, for messages) with ``flock``, which
the kernel drops when its process dies; where ``flock`` is missing it falls back to asking whether
the PID is alive on this host. :class:`tlkit.finetune.rundir.RunDir` takes it before it writes.
No Keras or TensorFlow at import.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from pathlib import Path

from tlkit._io import pid_alive
from tlkit.errors import RunDirError

try:  # flock is POSIX; elsewhere the lock falls back to "is the PID alive" on this host
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """An exclusive lock on a run directory: a file holding ``{"pid", "host"}``, locked with flock.

    The kernel drops a flock when its process dies, so a lock file left by a killed
    process is recognised as stale and taken over; the PID in it is for messages.
    """

    def __init__(self, path: Path) -> None:
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

        Raises :class:`RunDirError` naming the owner when a live process holds it.
        """
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            info = self._read(fd)
            try:
                if self._held_by_other(fd, info, probe=False):
                    raise RunDirError(
                        f"{self.path.parent} is in use by another tlkit process ({self.describe(info)}); "
                        f"wait for it to finish or stop it, or pass --name for another run"
                    )
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
        raise RunDirError(f"could not lock {self.path}: it keeps changing; is another tlkit process starting?")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
