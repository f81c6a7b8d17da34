"""The lock on a run directory: one process at a time, and a lock left by a dead process is taken over.

:class:`RunLock` holds ``.tlkit.lock`` (the owner's PID and host, for messages) with ``flock``, which
the kernel drops when its process dies; where ``flock`` is missing it falls back to asking whether
the PID is alive on this host. :class:`tlkit.finetune.rundir.RunDir` takes it before it writes.
The mechanism is :class:`tlkit._lock.FileLock`, shared with the locks on ``extract --out`` and
``export --out``. No Keras or TensorFlow at import.
"""

from __future__ import annotations

from tlkit._lock import FileLock
from tlkit.errors import RunDirError, TlkitError


class RunLock(FileLock):
    """An exclusive lock on a run directory: a file holding ``{"pid", "host"}``, locked with flock.

    The kernel drops a flock when its process dies, so a lock file left by a killed
    process is recognised as stale and taken over; the PID in it is for messages.
    A live owner raises :class:`RunDirError`.
    """

    error = RunDirError

    def busy_error(self, info: dict) -> TlkitError:
        return RunDirError(
            f"{self.path.parent} is in use by another tlkit process ({self.describe(info)}); "
            f"wait for it to finish or stop it, or pass --name for another run"
        )
