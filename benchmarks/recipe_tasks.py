"""The two tasks of ``bench_recipes.py``, made deterministically from scikit-image's bundled photos.

No download: every source is a file inside the scikit-image package (``skimage/data/*.png|jpg``).
Imports only numpy, PIL and scikit-image (no TensorFlow, no tlkit), so tests use it alone.

* :func:`write_fine_grained`: a single-label, fine-grained task. Each class is one window of a
  textured photo (two windows each of the Hubble deep field, an immunohistochemistry slide, a
  retina, scikit-image's gravel and grass textures); an image is a small crop from a random place
  and scale inside its class's window, with a small brightness/contrast change. Classes from the
  same photo look alike: they differ in density, colour and structure, not in object. Written as a
  CSV manifest ``path,label,split`` (train / val / test), the test crops never seen in training.
* :func:`write_multi_label`: composites. A background (a crop of a texture) with 1 to
  :data:`MAX_OBJECTS` object patches (crops of different photos: cat, astronaut, rocket, coffee
  cup, colour wheel, coins, logo, motorcycle) pasted at random places and scales; the labels are the
  objects present. Written as a CSV manifest ``path,labels,split`` with labels separated by
  :data:`LABEL_SEP`.

Both are pure functions of their arguments: the same seed gives the same bytes (PIL's JPEG
encoder at a fixed quality, numpy's PCG64).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LABEL_SEP = "|"
SIDE = 96  # pixels of every written image (square)
QUALITY = 92
MAX_OBJECTS = 3


def _rgb(name: str) -> np.ndarray:
    from skimage import data

    im = getattr(data, name)()
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3])


def _gray_tinted(name: str, tint: tuple[float, float, float]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return np.clip(_rgb(name).astype(np.float32) * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)

    return load


def _motorcycle() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.stereo_motorcycle()[0])


# class name -> (photo loader, window (y0, y1, x0, x1) inside that photo)
FINE_CLASSES: dict[str, tuple[Callable[[], np.ndarray], tuple[int, int, int, int]]] = {
    "brick": (_gray_tinted("brick", (1.0, 1.0, 1.0)), (0, 512, 0, 512)),
    "grass": (_gray_tinted("grass", (1.0, 1.0, 1.0)), (0, 512, 0, 512)),
    "gravel": (_gray_tinted("gravel", (1.0, 1.0, 1.0)), (0, 512, 0, 512)),
    "moon": (_gray_tinted("moon", (1.0, 1.0, 1.0)), (0, 512, 0, 512)),
    "hubble": (lambda: _rgb("hubble_deep_field"), (0, 872, 0, 1000)),
    "ihc_membrane": (lambda: _rgb("immunohistochemistry"), (0, 256, 0, 512)),
    "ihc_stroma": (lambda: _rgb("immunohistochemistry"), (256, 512, 0, 512)),
    "retina_centre": (lambda: _rgb("retina"), (450, 960, 450, 960)),
    "retina_rim": (lambda: _rgb("retina"), (150, 450, 300, 1100)),
    "cat_fur": (lambda: _rgb("chelsea"), (150, 300, 0, 451)),
}

# object name -> (photo loader, crop (y0, y1, x0, x1)); the logo keeps its alpha as the paste mask
OBJECTS: dict[str, tuple[Callable[[], np.ndarray], tuple[int, int, int, int]]] = {
    "cat": (lambda: _rgb("chelsea"), (20, 290, 100, 330)),
    "astronaut": (lambda: _rgb("astronaut"), (0, 300, 120, 360)),
    "rocket": (lambda: _rgb("rocket"), (40, 427, 250, 420)),
    "cup": (lambda: _rgb("coffee"), (20, 330, 120, 470)),
    "colorwheel": (lambda: _rgb("colorwheel"), (0, 370, 0, 371)),
    "coins": (lambda: _rgb("coins"), (0, 303, 0, 384)),
    "motorcycle": (_motorcycle, (40, 480, 20, 720)),
    "logo": (lambda: _logo(), (0, 500, 0, 500)),
}
BACKGROUNDS = (
    _gray_tinted("brick", (0.9, 0.8, 0.7)),
    _gray_tinted("gravel", (0.7, 0.7, 0.75)),
    _gray_tinted("grass", (0.6, 0.75, 0.55)),
)


def _logo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.logo())  # RGBA


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def _jpeg(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=QUALITY)


def _photometric(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-12, 12)
    return np.clip(rgb.astype(np.float32) * gain + shift, 0, 255).astype(np.uint8)


def _split_names(n_train: int, n_val: int, n_test: int) -> list[str]:
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


def _write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def write_fine_grained(
    folder: str | Path,
    *,
    seed: int = 0,
    classes: int = len(FINE_CLASSES),
    train: int = 20,
    val: int = 6,
    test: int = 20,
    crop: tuple[int, int] = (32, 64),
) -> Path:
    """Write the fine-grained task into ``folder`` (images under ``images/``); return its manifest.

    ``classes`` first entries of :data:`FINE_CLASSES`; per class ``train`` / ``val`` / ``test``
    images, each a square crop of a side drawn from ``crop`` (source pixels) at a random place in
    the class's window, resized to :data:`SIDE`. Manifest: ``fine.csv`` with ``path,label,split``.
    """
    folder = Path(folder)
    rng = np.random.default_rng(np.random.PCG64([seed, 1]))
    rows = []
    cache: dict[int, np.ndarray] = {}
    for name in list(FINE_CLASSES)[:classes]:
        load, (y0, y1, x0, x1) = FINE_CLASSES[name]
        src = cache.setdefault(id(load), load())
        for i, split in enumerate(_split_names(train, val, test)):
            side = int(rng.integers(crop[0], crop[1] + 1))
            oy = int(rng.integers(y0, y1 - side + 1))
            ox = int(rng.integers(x0, x1 - side + 1))
            im = _photometric(_resize(np.ascontiguousarray(src[oy : oy + side, ox : ox + side]), SIDE, SIDE), rng)
            rel = f"images/{name}/{split}_{i:03d}.jpg"
            _jpeg(im, folder / rel)
            rows.append([rel, name, split])
    return _write_manifest(folder / "fine.csv", ["path", "label", "split"], rows)


def _paste(canvas: np.ndarray, patch: np.ndarray, y: int, x: int) -> None:
    h, w = patch.shape[:2]
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    if patch.shape[2] == 4:
        a = patch[..., 3:4].astype(np.float32) / 255.0
        region = region * (1 - a) + patch[..., :3].astype(np.float32) * a
    else:
        region = patch.astype(np.float32)
    canvas[y : y + h, x : x + w] = np.clip(region, 0, 255).astype(np.uint8)


def composite(
    rng: np.random.Generator, sources: dict[str, np.ndarray], backgrounds: list[np.ndarray], side: int = SIDE
) -> tuple[np.ndarray, list[str]]:
    """One composite image and the sorted names of the objects pasted on it."""
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    s = int(rng.integers(side, min(bg.shape[:2]) + 1))
    oy, ox = int(rng.integers(0, bg.shape[0] - s + 1)), int(rng.integers(0, bg.shape[1] - s + 1))
    canvas = _resize(np.ascontiguousarray(bg[oy : oy + s, ox : ox + s]), side, side).copy()
    names = sorted(sources)
    k = int(rng.integers(1, MAX_OBJECTS + 1))
    chosen = sorted(rng.choice(len(names), size=k, replace=False).tolist())
    for j in chosen:
        src = sources[names[j]]
        ph = int(side * rng.uniform(0.3, 0.5))
        pw = max(8, int(ph * src.shape[1] / src.shape[0] * rng.uniform(0.85, 1.15)))
        pw = min(pw, side)
        patch = _resize(src, ph, pw)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        _paste(
            canvas,
            np.ascontiguousarray(patch),
            int(rng.integers(0, side - ph + 1)),
            int(rng.integers(0, side - pw + 1)),
        )
    return _photometric(canvas, rng), [names[j] for j in chosen]


def write_multi_label(
    folder: str | Path, *, seed: int = 0, objects: int = len(OBJECTS), train: int = 160, val: int = 48, test: int = 120
) -> Path:
    """Write the multi-label task into ``folder``; return its manifest ``multi.csv`` (``path,labels,split``).

    ``objects`` first entries of :data:`OBJECTS`; each image holds 1 to :data:`MAX_OBJECTS` of them.
    """
    folder = Path(folder)
    rng = np.random.default_rng(np.random.PCG64([seed, 2]))
    sources: dict[str, np.ndarray] = {}
    for name in list(OBJECTS)[:objects]:
        load, (y0, y1, x0, x1) = OBJECTS[name]
        sources[name] = np.ascontiguousarray(load()[y0:y1, x0:x1])
    backgrounds = [b() for b in BACKGROUNDS]
    rows = []
    for i, split in enumerate(_split_names(train, val, test)):
        im, labels = composite(rng, sources, backgrounds)
        rel = f"images/{split}_{i:04d}.jpg"
        _jpeg(im, folder / rel)
        rows.append([rel, LABEL_SEP.join(labels), split])
    return _write_manifest(folder / "multi.csv", ["path", "labels", "split"], rows)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The manifest's rows as dicts (tests and the benchmark's report)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
