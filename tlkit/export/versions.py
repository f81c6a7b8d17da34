"""Export targets without TensorFlow: version numbers, temporary directories, early refusals.

``tlkit export`` checks its target with these before TensorFlow is imported, so a
mistake in ``--out`` or ``--version`` is refused in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from tlkit._io import pid_alive
from tlkit.errors import AlreadyExistsError, ConfigError, ExportError

TMP_PREFIX = ".tmp-"
DEFAULT_ROOT = Path("saved_models")


def existing_versions(out: str | Path) -> list[int]:
    """Integer version directories under ``out`` (temporary and other entries ignored)."""
    root = Path(out)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(out: str | Path) -> int:
    """The next free version: the highest existing one + 1, or 1."""
    versions = existing_versions(out)
    return versions[-1] + 1 if versions else 1


def tmp_name(version: int) -> str:
    """Prefix of an export's temporary directory: version, host and process id."""
    return f"{TMP_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}-"


def clean_stale_temp_dirs(out: str | Path, *, max_age_s: float = 24 * 3600) -> list[Path]:
    """Remove temporary export directories whose exporting process is gone; returns them.

    A directory from this host is stale when its process no longer runs; one from
    another host (shared file system) only when older than ``max_age_s``, since its
    process cannot be checked from here.
    """
    removed: list[Path] = []
    root = Path(out)
    if not root.is_dir():
        return removed
    host = socket.gethostname()
    for p in root.iterdir():
        if not (p.is_dir() and p.name.startswith(TMP_PREFIX)):
            continue
        parts = p.name[len(TMP_PREFIX) :].split("-")
        try:
            pid = int(parts[-2])
            p_host = "-".join(parts[1:-2])
        except (ValueError, IndexError):
            continue  # not one of ours
        if p_host == host:
            stale = pid != os.getpid() and not pid_alive(pid)
        else:
            stale = time.time() - p.stat().st_mtime > max_age_s
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def resolve_version(out: Path, version: int | None) -> int:
    """``version`` checked, or the next free one."""
    if version is None:
        return next_version(out)
    version = int(version)
    if version < 1:
        raise ConfigError(f"--version must be a positive integer, got {version}")
    return version


def check_out_dir(out: str | Path) -> Path:
    """``out`` as a usable model directory: absent (created later) or a directory.

    Refuses a file, or a path below a file, with a message naming it and the fix
    (instead of the operating system's bare "File exists").
    """
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == out else f" (its parent {p} is a file)"
            raise ExportError(
                f"--out {out} cannot hold versions{where}: {p} is a file, not a directory; pass a "
                "directory (new or existing) and the export goes into OUT/N/"
            )
        if p.exists():
            break
    if (out / "saved_model.pb").is_file():
        raise ExportError(
            f"--out {out} is itself a SavedModel version directory; pass its parent (the model "
            f"directory {out.parent}) and the export becomes the next version there"
        )
    return out


def refuse_existing(target: Path, out: Path, *, explicit: bool = True) -> None:
    """Refuse to write over an existing version; ``explicit``: the user chose its number (--version)."""
    if target.exists() and not explicit:
        # The number was picked as the next free one under the lock: something that does not take it wrote N.
        raise AlreadyExistsError(
            f"{target} appeared while this export ran (written by a program that does not take {out}'s lock); "
            f"run the export again for the next free version ({next_version(out)})"
        )
    if target.exists():
        raise AlreadyExistsError(
            f"{target} already exists and versions are never overwritten; omit --version for the next free "
            f"one ({next_version(out)})"
        )


def check_target(out: str | Path, version: int | None) -> Path:
    """Every refusal possible before building a model: the directory and an explicit version."""
    out = check_out_dir(out)
    if version is not None:
        refuse_existing(out / str(resolve_version(out, version)), out)
    return out


def default_out(*, base: str | None = None, run_dir: str | Path | None = None) -> Path:
    """``saved_models/NAME``: the base's registry name, or the run directory's name."""
    if base is not None:
        from tlkit.registry import get_spec

        return DEFAULT_ROOT / get_spec(base).name
    return DEFAULT_ROOT / Path(str(run_dir)).resolve().name
