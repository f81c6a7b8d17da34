"""A run's log: every line on the console (unless quiet) and in the run's ``train.log``."""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Log:
    """Prints to the console and appends to the run's ``train.log``; lines logged before the
    run directory is ours are kept and written when :meth:`attach` names the file."""

    def __init__(self, path: Path | None = None, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet
        self._pending: list[str] = []

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {msg}\n"
        if self.path is None:
            self._pending.append(line)
            return
        with open(self.path, "a") as f:
            f.write(line)

    def record(self, msg: str) -> None:
        """A line for ``train.log`` only (the console gets the command's own line)."""
        quiet, self.quiet = self.quiet, True
        try:
            self(msg)
        finally:
            self.quiet = quiet

    def warn(self, msg: str) -> None:
        """A line on stderr (``--quiet`` too: it is not progress) and in ``train.log``."""
        print(f"warning: {msg}", file=sys.stderr, flush=True)
        self.record(f"warning: {msg}")

    def attach(self, path: Path) -> None:
        self.path = path
        with open(path, "a") as f:
            f.writelines(self._pending)
        self._pending = []
