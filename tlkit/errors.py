"""The error model: every mistake a user can make raises a :class:`TlkitError`.

The CLI prints a ``TlkitError`` on one line and exits 2; anything else is a bug and is
shown with its traceback (exit 1). Each subclass also derives from the built-in exception
a caller would naturally catch (``ValueError``, ``KeyError``, ...), so library users who
catch those keep working.
"""

from __future__ import annotations

import os


class TlkitError(Exception):
    """A user-facing error; the message names the value, what is accepted and the fix."""


class ConfigError(TlkitError, ValueError):
    """An option or argument value that tlkit cannot use (a flag, a config field)."""


class RunDirError(TlkitError, FileExistsError):
    """A run directory that cannot be created, replaced, resumed or locked as asked."""


class NotFoundError(TlkitError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what tlkit expects there)."""


class AlreadyExistsError(TlkitError, FileExistsError):
    """An output that exists and would be overwritten; the message names the flag that allows it."""


class DataError(TlkitError, ValueError):
    """The data cannot be used as given; the message names the problem and the fix."""


class ImageError(TlkitError, ValueError):
    """A file that cannot be used as an image; ``reason`` is one of
    ``missing``, ``empty``, ``not_an_image``, ``unsupported_format``, ``truncated``,
    ``corrupt``, ``too_large``, ``not_a_file``, ``dangling_link``, ``unreadable``."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


class ModelError(TlkitError, ValueError):
    """A model that cannot be built or used as asked (input size, layer name, head)."""


class UnknownModelError(TlkitError, KeyError):
    """A model name the registry does not know; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class WeightsError(TlkitError, ValueError):
    """Pretrained weights cannot be provided as asked; the message says why and what to do."""


class ConversionError(TlkitError, ValueError):
    """A layer FC-to-conv conversion cannot convert; ``layer`` names it."""

    def __init__(self, layer: str, reason: str) -> None:
        self.layer, self.reason = layer, reason
        super().__init__(f"cannot convert layer {layer!r} to a fully convolutional form: {reason}")


class ExportError(TlkitError, RuntimeError):
    """An export that cannot be written (bad model, labels or target)."""


class OutputInUseError(TlkitError, RuntimeError):
    """An output (run directory, features file, model directory) locked by another live tlkit process."""
