"""A segmentation data set made on the spot from scikit-image's bundled photos (no download, no stored files).

Each image is a background (a random crop of a texture or photo: brick, grass, gravel, the
cameraman, the Hubble deep field; the gray ones tinted) with 1 to :data:`MAX_OBJECTS` objects pasted at random
places and scales, left-right flipped at random, partly outside the frame or over each other (a
later object hides an earlier one). Every object is cut out of a photo by a mask known by
construction, so the label of every pixel is exact:

* ``cat``: Chelsea's head and shoulders inside an ellipse; ``cup``: the coffee cup inside an ellipse;
* ``astronaut``: Eileen Collins inside a head-and-shoulders polygon;
* ``coins``: a group of the coins photo's coins, the mask its thresholded foreground (Otsu, holes filled);
* ``horse``: scikit-image's horse silhouette, filled with the moon photo's surface tinted brown;
* ``logo``: scikit-image's logo, the mask its non-white pixels (gaps and holes closed).

Only the object's masked pixels are pasted (no blending), so an object's outline is its class's
shape: boundaries matter (an ellipse, a polygon, coin rims, legs and ears), and the background
around it is another photo. Images are JPEG (quality :data:`QUALITY`), masks palette PNGs
(:func:`tlkit.segment.masks.write_mask`). Image i of a split is drawn from its own stream
(PCG64 of (seed, split, i)), so the same arguments give the same bytes, and ``--train 200`` starts
with the 120 images of ``--train 120``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from tlkit.errors import AlreadyExistsError

CLASSES: list[str] = ["background", "cat", "cup", "astronaut", "coins", "horse", "logo"]
QUALITY = 92
MAX_OBJECTS = 4
OBJECT_SIDE = 160  # source objects are kept at most this many pixels high or wide
HEIGHT = (0.3, 0.65)  # an object's height as a fraction of the image side
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    im = np.asarray(getattr(data, name)())
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3]).astype(np.uint8)


def _tint(rgb: np.ndarray, tint: tuple[float, float, float]) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)


def _resize(a: np.ndarray, h: int, w: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))


def _shrink(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    f = min(1.0, OBJECT_SIDE / max(h, w))
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    return _resize(rgb, nh, nw), _resize(mask.astype(np.uint8), nh, nw, nearest=True).astype(bool)


def _ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0


def _polygon(h: int, w: int, points: list[tuple[float, float]]) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon([(x * (w - 1), y * (h - 1)) for x, y in points], fill=1)
    return np.asarray(im).astype(bool)


def _coins() -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage
    from skimage import data
    from skimage.filters import threshold_otsu

    gray = data.coins()[170:300, 10:200]  # a few coins of the bottom rows
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(gray > threshold_otsu(gray), iterations=2))
    return _tint(np.stack([gray] * 3, -1), (1.1, 0.9, 0.5)), mask


def _horse() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    mask = ~np.asarray(data.horse(), bool)  # the horse is False on a True background
    ys, xs = np.nonzero(mask)
    mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    texture = _tint(_photo("moon")[100 : 100 + mask.shape[0], 50 : 50 + mask.shape[1]], (0.8, 0.5, 0.28))
    return texture, mask


def _logo() -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage
    from skimage import data

    rgba = np.asarray(data.logo())  # opaque: the logo's disc and snake on white
    ink = ndimage.binary_opening(rgba[..., :3].min(-1) < 220, iterations=2)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(ink, iterations=4))  # the white gaps inside too
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return np.ascontiguousarray(rgba[..., :3][sl]), mask[sl]


@cache
def objects() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Class index -> (RGB uint8 [h, w, 3], mask bool [h, w]) of the object cut-outs (see the module doc)."""
    cat = _photo("chelsea")[20:290, 100:330]
    cup = _photo("coffee")[20:330, 120:470]
    astronaut = _photo("astronaut")[10:400, 20:370]
    bust = [(0.45, 0.0), (0.75, 0.0), (0.84, 0.2), (0.82, 0.38), (0.9, 0.55), (1.0, 0.75), (1.0, 1.0)]
    bust += [(0.0, 1.0), (0.05, 0.75), (0.2, 0.55), (0.36, 0.38), (0.36, 0.2)]
    out = {
        1: (cat, _ellipse(*cat.shape[:2])),
        2: (cup, _ellipse(*cup.shape[:2])),
        3: (astronaut, _polygon(*astronaut.shape[:2], bust)),
        4: _coins(),
        5: _horse(),
        6: _logo(),
    }
    return {k: _shrink(np.ascontiguousarray(rgb), m) for k, (rgb, m) in out.items()}


@cache
def backgrounds() -> list[np.ndarray]:
    """The background photos and textures (RGB uint8), tinted so that none is gray."""
    return [
        _tint(_photo("brick"), (0.9, 0.8, 0.7)),
        _tint(_photo("grass"), (0.6, 0.8, 0.5)),
        _tint(_photo("gravel"), (0.75, 0.75, 0.8)),
        _tint(_photo("camera"), (0.6, 0.7, 0.9)),
        _photo("hubble_deep_field"),
    ]


def composite(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 [size, size, 3]) and its mask (uint8 class indices [size, size])."""
    bgs, objs = backgrounds(), objects()
    bg = bgs[int(rng.integers(len(bgs)))]
    s = int(rng.integers(min(size, *bg.shape[:2]), min(bg.shape[:2]) + 1))
    oy, ox = int(rng.integers(0, bg.shape[0] - s + 1)), int(rng.integers(0, bg.shape[1] - s + 1))
    canvas = _resize(np.ascontiguousarray(bg[oy : oy + s, ox : ox + s]), size, size).copy()
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        cls = int(rng.integers(1, len(CLASSES)))
        rgb, mask = objs[cls]
        ph = max(4, int(size * rng.uniform(*HEIGHT)))
        pw = max(4, min(size, int(ph * mask.shape[1] / mask.shape[0] * rng.uniform(0.85, 1.15))))
        patch = _resize(rgb, ph, pw).astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)
        patch = np.clip(patch, 0, 255).astype(np.uint8)
        pm = _resize(mask.astype(np.uint8), ph, pw, nearest=True).astype(bool)
        if rng.random() < 0.5:
            patch, pm = patch[:, ::-1], pm[:, ::-1]
        y = int(rng.integers(-ph // 6, size - ph + ph // 6 + 1))  # up to a sixth outside the frame
        x = int(rng.integers(-pw // 6, size - pw + pw // 6 + 1))
        cy0, cx0, cy1, cx1 = max(y, 0), max(x, 0), min(y + ph, size), min(x + pw, size)
        sub = pm[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
        canvas[cy0:cy1, cx0:cx1][sub] = patch[cy0 - y : cy1 - y, cx0 - x : cx1 - x][sub]
        label[cy0:cy1, cx0:cx1][sub] = cls
    return canvas, label


def make_dataset_folder(
    out: str | Path, *, train: int = 120, val: int = 30, test: int = 30, size: int = 128, seed: int = 0
) -> Path:
    """Write ``out/{train,val,test}/{images,masks}`` and ``out/classes.txt``; return ``out``.

    ``size``-pixel square JPEG photos and palette PNG masks named ``{split}_{i:04d}``; the same
    arguments give the same bytes. Refuses (:class:`~tlkit.errors.AlreadyExistsError`) an ``out``
    that already holds files, so no image of an earlier set is left beside the new ones.
    """
    from PIL import Image

    from tlkit.segment.masks import write_mask

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise AlreadyExistsError(f"{out} is not empty: give a new folder for the generated data")
    for split, count in (("train", train), ("val", val), ("test", test)):
        if count <= 0:
            continue
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        for i in range(int(count)):
            rng = np.random.default_rng(np.random.PCG64([int(seed), SPLIT_IDS[split], i]))
            image, label = composite(rng, int(size))
            name = f"{split}_{i:04d}"
            Image.fromarray(image).save(out / split / "images" / f"{name}.jpg", format="JPEG", quality=QUALITY)
            write_mask(out / split / "masks" / f"{name}.png", label, len(CLASSES))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    return out
