"""SIGTERM handled as SIGINT (Ctrl-C) is, and which of the two stopped the command.

``kill``, schedulers and container runtimes send SIGTERM. :func:`sigterm_as_sigint` makes it
run whatever Ctrl-C runs at that moment (Python's ``KeyboardInterrupt``, or a handler a command
put in front of it), so every command's interrupt path (a run released, temporary files removed,
finished work kept for ``--resume``) serves both. The CLI exits ``128 + the signal's number``,
as a shell reports a process the signal ended: 130 after SIGINT, 143 after SIGTERM.

Python raises the KeyboardInterrupt wherever the main thread is. Inside a garbage-collection
callback or a ``__del__`` (TensorFlow's and JAX's objects have both) it is printed as "Exception
ignored" and lost, and a long job would run to its end. :func:`interrupts_noted` remembers every
interrupt, so a loop (the extraction's batches, training's callbacks) can stop at its next step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

_received: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)  # what Ctrl-C does now (default: raise KeyboardInterrupt)
    raise KeyboardInterrupt  # SIGINT ignored (a background job of a shell), or its handler returned


def sigterm_as_sigint() -> None:
    """Install the SIGTERM handler (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def interrupting_signal() -> int:
    """The signal that interrupted the command: SIGTERM if one arrived, else SIGINT."""
    return _received[-1] if _received else int(signal.SIGINT)


def interrupting_name() -> str:
    """``"SIGTERM"`` or ``"SIGINT"`` (see :func:`interrupting_signal`)."""
    return signal.Signals(interrupting_signal()).name


def interrupted_exit_code() -> int:
    """128 + the interrupting signal's number: 130 (SIGINT) or 143 (SIGTERM)."""
    return 128 + interrupting_signal()


@contextlib.contextmanager
def interrupts_noted() -> Iterator[Callable[[], bool]]:
    """Yield "has a SIGINT or SIGTERM arrived since the block began?"; the handler is put back after.

    Ctrl-C still raises as before; this only remembers it, for the case its KeyboardInterrupt was
    swallowed (see the module docstring).
    """
    seen: list[int] = []
    start = len(_received)
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda: len(_received) > start
        return

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield lambda: bool(seen) or len(_received) > start
    finally:
        signal.signal(signal.SIGINT, previous)
