"""Finding and checking segmentation data: (image, mask) pairs from folders or a CSV.

Layouts :func:`find_pairs` accepts (``DIR`` is what ``--data`` names):

* ``DIR/images/*`` and ``DIR/masks/*.png``, matched by file stem (``cat_01.jpg`` with
  ``cat_01.png``); the validation split is drawn from them (``val_split``, seeded);
* ``DIR/{train,val,test}/{images,masks}``: the splits as given (``val`` and ``test`` optional; no
  ``val`` means one drawn from ``train`` as above);
* a CSV file with columns ``image,mask[,split]``, paths relative to the CSV's folder.

Class names come from ``classes.txt`` (in ``DIR``, or beside the CSV): line i names index i, index
0 being the background. Without it the classes are ``class_0`` .. ``class_K``, K the largest index
found in the masks (255, ignore, not counted).

:func:`check_pairs` reads every pair as training will (tlkit's decoder, EXIF orientation applied)
and refuses, in one line naming the file, a size mismatch (saying when the mask fits the photo as
stored, before its EXIF rotation), an unknown label value, or a mask that is not an index PNG.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlkit.errors import DataError
from tlkit.segment.masks import IGNORE, read_mask

SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.txt"
Pair = tuple[str, str]


@dataclass
class SegSource:
    """Sorted, absolute (image_path, mask_path) pairs per split, the class names and the data's root."""

    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    classes: list[str]
    root: str

    def split(self, name: str) -> list[Pair]:
        if name not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)


@dataclass
class SegReport:
    """What :func:`check_pairs` found: per split, images and pixels per class (and ignored pixels)."""

    classes: list[str]
    images: dict[str, int] = field(default_factory=dict)
    pixels: dict[str, list[int]] = field(default_factory=dict)  # split -> pixel count per class index
    ignored: dict[str, int] = field(default_factory=dict)  # split -> pixels labelled 255
    rotated: int = 0  # images turned upright by their EXIF orientation

    def to_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "images": dict(self.images),
            "pixels": {s: {c: int(n) for c, n in zip(self.classes, v)} for s, v in self.pixels.items()},
            "ignored": dict(self.ignored),
            "rotated": self.rotated,
        }

    def lines(self) -> list[str]:
        """A short human summary: images per split and each class's share of the labelled pixels."""
        out = []
        for s in SPLITS:
            if s not in self.pixels:
                continue
            counts = np.asarray(self.pixels[s], np.float64)
            total = max(counts.sum(), 1.0)
            shares = ", ".join(f"{c} {100 * n / total:.1f}%" for c, n in zip(self.classes, counts))
            out.append(f"{s}: {self.images[s]} images; {shares}; ignored {self.ignored[s]} px")
        return out


def _image_files(folder: Path) -> dict[str, Path]:
    from tlkit.data.images import is_image_path

    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not is_image_path(p):
            continue
        if p.stem in out:
            raise DataError(f"{out[p.stem]} and {p} have the same stem: keep one image per name in {folder}")
        out[p.stem] = p
    return out


def _pair_folder(folder: Path) -> list[Pair]:
    """(image, mask) pairs of ``folder/images`` and ``folder/masks`` matched by stem; unmatched files refused."""
    images, masks_dir = folder / "images", folder / "masks"
    if not masks_dir.is_dir():
        raise DataError(f"{folder} has images/ but no masks/ folder: put one mask PNG per image in {masks_dir}")
    imgs = _image_files(images)
    masks = {}
    for p in sorted(masks_dir.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() != ".png":
            raise DataError(f"mask {p} is not a PNG: save masks as palette or 8-bit grayscale PNGs of class indices")
        masks[p.stem] = p
    for stem, p in imgs.items():
        if stem not in masks:
            raise DataError(f"image {p} has no mask: expected {masks_dir / (stem + '.png')}")
    for stem, p in masks.items():
        if stem not in imgs:
            raise DataError(f"mask {p} has no image: expected an image named {stem}.* in {images}")
    return [(str(imgs[s].resolve()), str(masks[s].resolve())) for s in sorted(imgs)]


def _read_classes(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise DataError(f"{path} must list one class name per line (line i = index i), without blank lines")
    if len(names) > IGNORE:
        raise DataError(f"{path} lists {len(names)} classes; at most {IGNORE} (index 255 means ignore)")
    if len(set(names)) != len(names):
        raise DataError(f"{path} names a class twice: every line must be a different class")
    return names


def _draw_val(pairs: list[Pair], val_split: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, val): ``round(len * val_split)`` pairs (at least 1 when 0 < val_split and 2+ pairs) drawn by ``seed``."""
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1), got {val_split}")
    n = len(pairs)
    k = int(round(n * val_split))
    if val_split > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    chosen = set(np.random.default_rng(np.random.PCG64([int(seed), 0x5E6])).permutation(n)[:k].tolist())
    return [p for i, p in enumerate(pairs) if i not in chosen], [p for i, p in enumerate(pairs) if i in chosen]


def _from_csv(path: Path) -> dict[str, list[Pair]]:
    base = path.parent
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
        cols = set(rows[0]) if rows else set()
    if not {"image", "mask"} <= cols:
        raise DataError(f"{path} needs the columns image,mask[,split]; it has {', '.join(sorted(cols)) or 'no rows'}")
    out: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    out["none"] = []
    for i, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip() or "none"
        if split not in out:
            raise DataError(f"{path} line {i}: split {split!r} is not one of {', '.join(SPLITS)}")
        img, mask = (str((base / row[c].strip()).resolve()) for c in ("image", "mask"))
        for what, p in (("image", img), ("mask", mask)):
            if not Path(p).is_file():
                raise DataError(f"{path} line {i}: the {what} {p} does not exist")
        out[split].append((img, mask))
    if out["none"] and any(out[s] for s in SPLITS):
        raise DataError(f"{path}: give every row a split, or none of them (then val is drawn by --val-split)")
    return out


def find_pairs(data: str, *, val_split: float = 0.2, seed: int = 0) -> SegSource:
    """The pairs and classes of ``data`` (a folder or a CSV; see the module doc), as a :class:`SegSource`."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"segmentation data {data} does not exist: give a folder with images/ and masks/, or a CSV")
    splits: dict[str, list[Pair]]
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{data} is a file but not a CSV: give a folder with images/ and masks/, or a CSV")
        splits = _from_csv(root)
        pool = splits.pop("none")
        if pool:  # no split column (or empty): val drawn from all rows
            splits["train"] = pool
        if pool or not splits["val"]:
            splits["train"], splits["val"] = _draw_val(sorted(splits["train"]), val_split, seed)
        classes_path = root.parent / CLASSES_FILE
    elif (root / "train").is_dir():
        splits = {s: _pair_folder(root / s) if (root / s / "images").is_dir() else [] for s in SPLITS}
        if not (root / "val" / "images").is_dir():
            splits["train"], splits["val"] = _draw_val(splits["train"], val_split, seed)
        classes_path = root / CLASSES_FILE
    elif (root / "images").is_dir():
        train, val = _draw_val(_pair_folder(root), val_split, seed)
        splits = {"train": train, "val": val, "test": []}
        classes_path = root / CLASSES_FILE
    else:
        raise DataError(
            f"{data} has neither images/ + masks/ nor train/images + train/masks: see `tlkit segment sample-data`"
        )
    splits = {s: sorted(splits[s]) for s in SPLITS}
    if not splits["train"]:
        raise DataError(f"{data} has no training pairs")
    classes = _read_classes(classes_path)
    if classes is None:
        top = 0
        for _, m in (p for s in SPLITS for p in splits[s]):
            values = np.unique(read_mask(m))
            values = values[values != IGNORE]
            if values.size:
                top = max(top, int(values.max()))
        classes = [f"class_{i}" for i in range(top + 1)]
    return SegSource(splits["train"], splits["val"], splits["test"], classes, str(root.resolve()))


def _check_one(image: str, mask: str, n_classes: int) -> tuple[np.ndarray, int, int]:
    """(per-class pixel counts, ignored pixels, EXIF orientation) of one pair, or a one-line DataError."""
    from tlkit.data.images import decode_rgb, open_regular
    from tlkit.data.orientation import SWAPS
    from tlkit.errors import ImageError

    try:
        with open_regular(image) as f:
            rgb, _, _, orientation = decode_rgb(f, image)
    except ImageError as exc:
        detail = f": {exc.detail}" if exc.detail else ""
        raise DataError(f"image {exc.path} cannot be used ({exc.reason}{detail})") from None
    m = read_mask(mask)
    (h, w), (mh, mw) = rgb.shape[:2], m.shape
    if (h, w) != (mh, mw):
        msg = f"mask {mask} is {mh}x{mw} (HxW) but its image {image} is {h}x{w}"
        if orientation != 1 and orientation in SWAPS and (mh, mw) == (w, h):
            msg += (
                f": the mask was drawn on the photo as stored, before its EXIF orientation ({orientation}) turns it"
                " upright; rotate the mask the same way (or save the photo upright without the tag)"
            )
        else:
            msg += ": draw the mask at the image's size"
        raise DataError(msg)
    counts = np.bincount(m.reshape(-1), minlength=256)
    unknown = [v for v in np.flatnonzero(counts).tolist() if v >= n_classes and v != IGNORE]
    if unknown:
        raise DataError(
            f"mask {mask} has label values {unknown} not among the {n_classes} classes (0..{n_classes - 1}) or "
            f"{IGNORE} (ignore): fix the mask or list the classes in {CLASSES_FILE}"
        )
    return counts[:n_classes].astype(np.int64), int(counts[IGNORE]), orientation


def check_pairs(source: SegSource, *, on_progress: Callable[[int, int], None] | None = None) -> SegReport:
    """Read every pair of ``source`` (see the module doc); a :class:`SegReport`, or the first problem as a DataError.

    ``on_progress(done, total)`` is called after each pair. Pairs are read on a few threads (PIL's decoders
    release the GIL); the first problem in split and file order is the one raised.
    """
    from concurrent.futures import ThreadPoolExecutor

    n_classes = len(source.classes)
    report = SegReport(classes=list(source.classes))
    todo = [(s, p) for s in SPLITS for p in source.split(s)]
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        results = pool.map(lambda sp: _check_one(sp[1][0], sp[1][1], n_classes), todo)
        for s in SPLITS:
            report.images[s] = len(source.split(s))
            report.pixels[s] = [0] * n_classes
            report.ignored[s] = 0
        for (s, _), (counts, ignored, orientation) in zip(todo, results):
            report.pixels[s] = [a + int(b) for a, b in zip(report.pixels[s], counts)]
            report.ignored[s] += ignored
            report.rotated += orientation != 1
            done += 1
            if on_progress is not None:
                on_progress(done, len(todo))
    return report
