"""What every weights kind shares: the error types, where caches live, checksums, and
:class:`WeightsFile` (one published file). No Keras import."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tlkit.errors import WeightsError


class WeightsUnavailableError(WeightsError):
    """The weights file is not cached here and cannot be downloaded (offline, firewall)."""


class ChecksumError(WeightsError):
    """A file's checksum differs from the published one."""


class WeightsMismatchError(WeightsError):
    """A weights file does not fit the model (different architecture, head or shapes)."""


def keras_home() -> Path:
    """Keras' base directory, as Keras resolves it: ``$KERAS_HOME`` or ``~/.keras``.

    Read from the environment at call time (Keras reads it once, at import), and
    falling back to ``/tmp/.keras`` where the home directory is not writable, as
    Keras does.
    """
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    base = Path.home()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def models_dir() -> Path:
    """Keras' cache of downloaded application weights: ``<keras_home>/models``."""
    return keras_home() / "models"


def tlkit_cache_dir() -> Path:
    """tlkit's cache of converted weights and imported sources: ``<keras_home>/tlkit``."""
    return keras_home() / "tlkit"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``sha256`` or ``md5``), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_algorithm(expected: str) -> str:
    """Keras' rule (``keras.utils.get_file``, ``hash_algorithm="auto"``): 64 hex digits
    are SHA-256, anything else MD5."""
    return "sha256" if len(expected) == 64 else "md5"


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file: what to fetch, from where, how to check it, and the
    folder under the Keras home where it is installed (``models`` or ``tlkit``)."""

    base: str
    fname: str
    url: str
    file_hash: str | None  # None: the publisher gives no checksum
    include_top: bool
    cache: str = "models"
    input_size: int | None = None  # the input size this file is for, where that picks the file

    @property
    def algorithm(self) -> str | None:
        return hash_algorithm(self.file_hash) if self.file_hash else None

    @property
    def cached_path(self) -> Path:
        return keras_home() / self.cache / self.fname

    def is_cached(self) -> bool:
        return self.cached_path.is_file()

    def verify(self, path: str | os.PathLike) -> None:
        """Raise :class:`ChecksumError` unless ``path`` has the published checksum."""
        if self.file_hash is None:
            return
        got = file_digest(path, self.algorithm or "md5")
        if got != self.file_hash:
            raise ChecksumError(
                f"{path}: {self.algorithm} checksum {got} does not match the published "
                f"{self.file_hash} of {self.fname} ({self.base}); the file is corrupt, "
                "truncated or a different file. Download it again from "
                f"{self.url}"
            )
