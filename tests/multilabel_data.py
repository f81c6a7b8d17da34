"""Multi-label test data: images of coloured shapes, each holding 0-3 of four shape kinds (the labels).

Imported by tests (``from multilabel_data import make_multilabel_csv``): tests/ is on ``sys.path``
through tests/conftest.py, for tests/cli too. Each kind has its own shape and colour and sits in its
own randomly chosen quadrant, so a tiny CNN at 32x32 can learn every label.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ("disc", "square", "stripe", "triangle")  # sorted: the classes' order in a DataSource
COLOURS = {"disc": (40, 220, 40), "square": (230, 40, 40), "stripe": (40, 80, 240), "triangle": (240, 220, 30)}


def _draw(img: np.ndarray, kind: str, y0: int, x0: int, q: int) -> None:
    m = max(1, q // 8)
    yy, xx = np.mgrid[0:q, 0:q]
    c = (q - 1) / 2
    if kind == "disc":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= (q / 2 - m) ** 2
    elif kind == "square":
        mask = (yy >= m) & (yy < q - m) & (xx >= m) & (xx < q - m)
    elif kind == "stripe":
        mask = (yy >= q // 2 - max(1, q // 6)) & (yy < q // 2 + max(1, q // 6))
    else:
        mask = (yy >= m) & (np.abs(xx - c) <= (yy - m) / 2)
    img[y0 : y0 + q, x0 : x0 + q][mask] = COLOURS[kind]


def make_multilabel_image(kinds: list[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3]: dark noise with each of ``kinds`` drawn in its own quadrant."""
    img = rng.integers(0, 50, (size, size, 3)).astype(np.uint8)
    q = size // 2
    quadrants = rng.permutation(4)[: len(kinds)]
    for kind, quad in zip(kinds, quadrants):
        _draw(img, kind, (quad // 2) * q, (quad % 2) * q, q)
    return img


def make_multilabel_csv(
    root: Path, n: int = 40, seed: int = 0, *, size: int = 32, split: bool = False, name: str = "labels.csv"
) -> Path:
    """Write ``n`` PNGs under ``root/images`` and ``root/<name>`` (``path,labels[,split]``; labels joined
    with ``|``, an empty cell for an image with no shape); returns the CSV's path.

    Image ``i`` has ``i % 4`` shapes (0-3), the kinds drawn at random (seeded), so every count occurs;
    with ``split``, every fifth image is ``val``. Read the truth back with :func:`read_truth`."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kinds = sorted(rng.choice(LABELS, size=i % 4, replace=False).tolist())
        Image.fromarray(make_multilabel_image(kinds, size, rng)).save(root / "images" / f"{i:04d}.png")
        row = [f"images/{i:04d}.png", "|".join(kinds)]
        rows.append(row + (["val" if i % 5 == 4 else "train"] if split else []))
    path = root / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels"] + (["split"] if split else []))
        w.writerows(rows)
    return path


def read_truth(csv_path: Path) -> dict[str, set[str]]:
    """{absolute image path: its set of labels} of a CSV written by :func:`make_multilabel_csv`."""
    with open(csv_path, newline="") as f:
        return {
            str((Path(csv_path).parent / r["path"]).resolve()): {x for x in r["labels"].split("|") if x}
            for r in csv.DictReader(f)
        }
