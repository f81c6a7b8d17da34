"""An exclusive lock held as an object on a store: one tlkit process at a time per run on gs:// or s3://.

The lock is an object (``.tlkit.lock``) created with the store's conditional write
(:func:`tlkit.storage.conditional.create_if_absent`): of several processes racing, exactly one
creates it. It records the holder's host, PID, start time and a random token; the holder deletes
it when it is done. A process killed with SIGKILL (or a lost machine) leaves it behind, and
nothing on the store can tell that its holder died, so:

* a lock left by a process *on this host* whose PID is gone is taken over by compare-and-swap
  (overwritten only if still at the version read: S3 ``If-Match``, GCS ``ifGenerationMatch``),
  so of two processes taking it over at once, one gets it;
* a lock from *another host* is refused, naming host, PID and time; ``--break-lock`` takes it
  over the same way (the user says that process is gone).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from tlkit._io import pid_alive
from tlkit.errors import RunDirError
from tlkit.storage.conditional import create_if_absent, delete_object, read_versioned, replace_if_unchanged


def describe(info: dict) -> str:
    """``PID 123 on host, since 2026-12-03 08:00:00 UTC``."""
    since = info.get("time")
    when = time.strftime(", since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else ""
    return f"PID {info.get('pid', '?')} on {info.get('host', '?')}{when}"


class StoreLock:
    """The lock object at ``url``; :meth:`acquire`, then :meth:`release` (idempotent)."""

    def __init__(
        self,
        url: str,
        what: str,
        *,
        error: type[Exception] = RunDirError,
        advice: str = "wait for it to finish, or if that process is gone pass --break-lock",
    ) -> None:
        self.url = url
        self.what = what  # the locked thing, for messages (the run's or the output's URL)
        self.error, self.advice = error, advice  # what a refusal raises and tells the user to do
        self.token: str | None = None

    def holder(self) -> dict | None:
        """The lock's record, or None when there is no lock object (a damaged one reads as ``{}``)."""
        found = self._read()
        return None if found is None else found[0]

    def _read(self) -> tuple[dict, str] | None:
        found = read_versioned(self.url)
        if found is None:
            return None
        raw, version = found
        try:
            info = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            info = {}
        return (info if isinstance(info, dict) else {}), version

    @staticmethod
    def is_stale(info: dict) -> bool:
        """A lock whose holder ran on this host and whose PID no longer exists."""
        pid = info.get("pid")
        return info.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)

    def acquire(self, *, break_lock: bool = False) -> dict | None:
        """Take the lock; returns the record of a stale (or broken) lock that was taken over.

        Raises ``error`` (:class:`RunDirError` unless given; one line: holder, what to do) when another
        process holds it.
        """
        record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": uuid.uuid4().hex}
        data = json.dumps(record).encode()
        for _ in range(3):
            # Looking first costs one request and keeps a store that ignores the precondition (the
            # GCS emulator) from overwriting a lock that is already there; the conditional create
            # still decides a race between processes that both saw none.
            found = self._read()
            if found is None:
                if create_if_absent(self.url, data):
                    self.token = record["token"]
                    return None
                found = self._read()
                if found is None:
                    continue  # released between our create and our read: try again
            info, version = found
            if not (break_lock or self.is_stale(info)):
                raise self.error(
                    f"{self.what} is in use by another tlkit process ({describe(info)}; lock object "
                    f"{self.url}); {self.advice}"
                )
            # Taken over by compare-and-swap, not delete-then-create: of two processes taking over
            # the same stale lock at once, only the first replaces the version both read.
            if replace_if_unchanged(self.url, data, version):
                self.token = record["token"]
                return info
        raise self.error(f"could not lock {self.what}: {self.url} keeps changing; is another tlkit process starting?")

    def release(self) -> None:
        """Delete the lock object if it is still ours (not broken and taken by another process)."""
        if self.token is None:
            return
        try:
            info = self.holder()
            if info is not None and info.get("token") == self.token:
                delete_object(self.url)
        finally:
            self.token = None
