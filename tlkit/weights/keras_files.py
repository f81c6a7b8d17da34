"""``keras_file`` weights: the exact files keras.applications fetches, cached where Keras
looks (``$KERAS_HOME/models``), checked by Keras' published checksum, downloaded with a
bounded wait, or installed from a copy by ``tlkit weights import``.

The file names, folders and checksums are data on each spec's :class:`WeightsEntry`
(see ``tlkit/models/applications_specs.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tlkit.errors import WeightsError
from tlkit.registry import ModelSpec, WeightsEntry, get_spec, load_builder
from tlkit.weights.files import (
    ChecksumError,
    WeightsFile,
    WeightsUnavailableError,
    keras_home,
    models_dir,
)

KIND = "keras_file"


def _entry_of(spec: ModelSpec) -> WeightsEntry:
    entry = spec.weights_entry("imagenet")
    if entry is None or entry.kind != KIND:
        raise WeightsError(f"{spec.name} is not a keras.applications base with ImageNet weights")
    return entry


def keras_weights_file(
    name: str | ModelSpec, *, include_top: bool = True, input_shape: tuple[int, ...] | None = None
) -> WeightsFile:
    """The file Keras loads for ``weights="imagenet"`` of a keras.applications base."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    entry = _entry_of(spec)
    return entry_file(spec, entry, include_top=include_top, input_shape=input_shape)


def entry_file(
    spec: ModelSpec, entry: WeightsEntry, *, include_top: bool = True, input_shape: tuple[int, ...] | None = None
) -> WeightsFile:
    """The file of ``entry`` for this head and input size."""
    shape = tuple(input_shape) if input_shape else spec.input_shape
    rows = spec.input_shape[0]
    if entry.sizes:
        # Keras picks the file by input size; sizes it has no file for load the 224 file.
        rows = shape[0] if shape[0] == shape[1] and shape[0] in entry.sizes else 224
    fname = (entry.file if include_top else entry.notop_file).format(rows=rows)
    file_hash = entry.file_hash if include_top else entry.notop_hash
    return WeightsFile(spec.name, fname, entry.url + fname, file_hash, include_top, input_size=rows)


def files(spec: ModelSpec, entry: WeightsEntry) -> list[WeightsFile]:
    """Every published file of ``entry`` (both heads; every input size that has its own file)."""
    sizes = entry.sizes or (spec.input_shape[0],)
    return [
        entry_file(spec, entry, include_top=top, input_shape=(rows, rows, 3)) for rows in sizes for top in (True, False)
    ]


def load(
    spec: ModelSpec,
    entry: WeightsEntry,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    include_top: bool,
    builder_kwargs: dict[str, Any],
) -> Any:
    """Make sure the file is here (verified), then let Keras build the model with it."""
    wf = entry_file(spec, entry, include_top=include_top, input_shape=input_shape)
    fetch(wf)
    with _keras_cache_at(keras_home()):
        return load_builder(spec)(
            num_classes=num_classes,
            input_shape=input_shape,
            include_top=include_top,
            weights="imagenet",
            **builder_kwargs,
        )


def status(spec: ModelSpec, entry: WeightsEntry) -> list[dict[str, Any]]:
    """Rows for ``tlkit weights list``: the default input size, with and without the top."""
    rows = []
    for top in (True, False):
        wf = entry_file(spec, entry, include_top=top)
        rows.append(
            {
                "base": spec.name,
                "imagenet": True,
                "kind": KIND,
                "include_top": top,
                "file": wf.fname,
                "checksum": f"{wf.algorithm}:{wf.file_hash}" if wf.file_hash else None,
                "cached": wf.is_cached(),
                "path": str(wf.cached_path),
                "url": wf.url,
            }
        )
    return rows


def path(
    spec: ModelSpec, entry: WeightsEntry, *, include_top: bool = True, input_shape: tuple[int, ...] | None = None
) -> tuple[Path, bool]:
    """Where Keras reads the file from, and whether it is there now."""
    wf = entry_file(spec, entry, include_top=include_top, input_shape=input_shape)
    return wf.cached_path, wf.is_cached()


# --- downloads: bounded in time, never a long hang -----------------------------------


def download_timeout() -> float:
    """Seconds to wait for the server to answer (``$TLKIT_DOWNLOAD_TIMEOUT``, default 10)."""
    try:
        return max(0.1, float(os.environ.get("TLKIT_DOWNLOAD_TIMEOUT", "10")))
    except ValueError:
        return 10.0


def _offline() -> bool:
    return os.environ.get("TLKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def probe_url(url: str, timeout: float) -> str | None:
    """``None`` if ``url`` answers a HEAD request within ``timeout`` seconds, else the reason.

    Runs in a daemon thread joined with a deadline, so a hanging DNS lookup (which
    socket timeouts do not cover) cannot hold the caller. Honours proxy settings.
    """
    result: list[str | None] = []

    def attempt() -> None:
        try:
            opener = urllib.request.build_opener()  # reads *_proxy from the environment now
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
                status = getattr(r, "status", 200)
                result.append(None if status == 200 else f"HTTP {status}")
        except urllib.error.HTTPError as exc:
            result.append(f"HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            result.append(f"cannot reach the server: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - any failure means "not downloadable"
            result.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=attempt, name="tlkit-probe", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if t.is_alive() or not result:
        return f"no answer within {timeout:g} s"
    return result[0]


def unavailable_message(wf: WeightsFile, reason: str) -> str:
    """The message of a :class:`WeightsUnavailableError`: file, URL, and the import command."""
    check = f"{wf.algorithm} {wf.file_hash}" if wf.file_hash else "Keras publishes no checksum"
    return (
        f"ImageNet weights for {wf.base} are not in the Keras cache ({models_dir()}) and cannot "
        f"be downloaded here ({reason}). On a machine with internet access, fetch\n"
        f"    {wf.fname}\n"
        f"from\n"
        f"    {wf.url}\n"
        f"({check}), copy it to this machine and run\n"
        f"    tlkit weights import {wf.fname} --base {wf.base}\n"
        f"Then weights='imagenet' works offline."
    )


def fetch(wf: WeightsFile) -> Path:
    """Return the cached path of ``wf``, downloading it (bounded in time) if needed."""
    path = wf.cached_path
    stale = ""
    if path.is_file():
        try:
            wf.verify(path)
            return path
        except ChecksumError:
            stale = f"the cached {path} fails its checksum"
    if _offline():
        raise WeightsUnavailableError(unavailable_message(wf, "TLKIT_OFFLINE is set" + (f"; {stale}" if stale else "")))
    timeout = download_timeout()
    reason = probe_url(wf.url, timeout)
    if reason is not None:
        raise WeightsUnavailableError(unavailable_message(wf, reason + (f"; {stale}" if stale else "")))
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(max(timeout, 30.0))  # a stalled transfer fails, not hangs
    try:
        got = keras.utils.get_file(
            wf.fname,
            wf.url,
            cache_subdir="models",
            file_hash=wf.file_hash,
            cache_dir=str(keras_home()),
            force_download=bool(stale),
        )
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailableError(unavailable_message(wf, f"download failed: {exc}")) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(got)


@contextlib.contextmanager
def _keras_cache_at(home: Path) -> Iterator[None]:
    """Point Keras' own cache lookup at ``home`` for the duration.

    Keras reads ``KERAS_HOME`` once, at import; tlkit reads it at call time. When the
    two differ (the variable was changed after Keras was imported), Keras would look
    for the file tlkit just verified in the wrong place and try to download it.
    """
    from tlkit._keras_compat import keras_home_as

    with keras_home_as(home):
        yield
