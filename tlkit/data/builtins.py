"""Built-in datasets that need no download: ``builtin:digits`` and ``builtin:faces``.

Each is written once as PNG class folders under ``<cache>/builtin/<name>/`` and read like
any user folder afterwards, so the builtins exercise the same code path as real data.
``<cache>`` is the ``cache_dir`` argument, else ``$TLKIT_HOME``, else ``~/.cache/tlkit``.

* ``digits``: scikit-learn's 1,797 handwritten digits (8x8, values 0..16), classes ``0``..``9``.
  Files keep the original 8x8 pixels, scaled to 0..255: the pipeline resizes anyway, and
  upsampling on disk would add no information, only bytes and a second interpolation.
* ``faces``: scikit-image's LFW subset, 200 grayscale 25x25 crops; the first 100 are faces
  and the last 100 non-faces (checked by eye, as the docstring says), classes
  ``face`` / ``non_face``. It ships inside scikit-image: no download.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tlkit._io import move_into_place

_MARKER = ".tlkit-builtin.json"  # hidden: folder scans skip it
_LAYOUT_VERSION = 1


def _digits() -> tuple[np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, [str(int(t)) for t in d.target]


def _faces() -> tuple[np.ndarray, list[str]]:
    from skimage.data import lfw_subset

    raw = np.asarray(lfw_subset())
    # Documented as uint8 but returned as float64 in [0, 1] (scikit-image 0.26): accept both.
    images = raw.astype(np.uint8) if raw.dtype == np.uint8 else np.rint(raw * 255.0).clip(0, 255).astype(np.uint8)
    half = len(images) // 2
    return images, ["face"] * half + ["non_face"] * (len(images) - half)


BUILTINS: dict[str, dict] = {
    "digits": {"load": _digits, "description": "scikit-learn handwritten digits, 1,797 8x8 images, 10 classes"},
    "faces": {"load": _faces, "description": "scikit-image LFW subset, 100 faces and 100 non-faces, 25x25"},
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The tlkit cache folder: ``cache_dir``, else ``$TLKIT_HOME``, else ``~/.cache/tlkit``."""
    return Path(cache_dir or os.environ.get("TLKIT_HOME") or "~/.cache/tlkit").expanduser()


def ensure(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of builtin ``name``, written on first use (atomically: temp folder, then rename)."""
    if name not in BUILTINS:
        from tlkit.data.pipeline import DataError

        raise DataError(f"unknown builtin dataset {name!r}; builtins: {', '.join('builtin:' + n for n in BUILTINS)}")
    target = cache_root(cache_dir) / "builtin" / name
    if _complete(target, name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    load: Callable[[], tuple[np.ndarray, list[str]]] = BUILTINS[name]["load"]
    images, labels = load()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        _write_pngs(tmp, images, labels)
        (tmp / _MARKER).write_text(json.dumps({"name": name, "count": len(images), "layout": _LAYOUT_VERSION}))
        if target.exists():  # incomplete or from an older layout: move it out of the way first
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=target.parent))
            move_into_place(target, old / name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            move_into_place(tmp, target)
        except OSError:
            if not _complete(target, name):  # not a concurrent writer's finished copy: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _complete(folder: Path, name: str) -> bool:
    try:
        meta = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("name") == name and meta.get("layout") == _LAYOUT_VERSION


def _write_pngs(folder: Path, images: np.ndarray, labels: list[str]) -> None:
    from PIL import Image

    for label in sorted(set(labels)):
        (folder / label).mkdir()
    width = len(str(len(images) - 1))
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(np.ascontiguousarray(img)).save(folder / label / f"{i:0{width}d}.png")
