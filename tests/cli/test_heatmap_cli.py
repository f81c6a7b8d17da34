"""`tlkit dense-eval --heatmap` through the installed command: the title's number is the map's own
and the strip no window covers is drawn as no data (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tlkit
from PIL import Image

# A whole model built and run: the full suite runs it, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

NO_DATA = (0xB0, 0xB0, 0xB0)  # tlkit.plots.NO_DATA_COLOR


def test_heatmap_marks_the_strip_no_window_covers(tmp_path: Path):
    # 224 x 318 at scale 224: windows of 224 every 32 pixels start at x = 0, 32, 64 and end by
    # x = 288, so the last 30 columns (cells from 288) are covered by no window.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 318, 3), dtype=np.uint8)
    image[..., 1] = 0  # no pixel of the picture is the no-data grey by chance
    Image.fromarray(image).save(tmp_path / "wide.png")
    result = tlkit(
        "dense-eval",
        "--base",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--image",
        "wide.png",
        "--scales",
        "224",
        "--heatmap",
        "heat.png",
        "--json",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    drawn = report["heatmap_map"]
    assert drawn["scale"] == 224 and drawn["class"] == report["top"][0]["name"]
    assert drawn["no_data_cells"] == 7  # one column of 32-pixel cells, 224 / 32 rows
    # The number the title gives is the map's highest value (the picture stores its title as the
    # PNG's Title text), not the score averaged over positions and scales.
    assert 0 < drawn["max"] <= 1
    with Image.open(tmp_path / "heat.png") as im:
        title = im.info["Title"]
    assert title == f"{drawn['class']} at scale 224 (stride 32)\nmax {drawn['max']:.3f} on this map"

    from scipy import ndimage

    with Image.open(tmp_path / "heat.png") as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    grey = (rgb == NO_DATA).all(axis=-1)
    labels, n = ndimage.label(grey)
    assert n >= 1, "nothing in the picture is drawn as no data"
    sizes = ndimage.sum(grey, labels, range(1, n + 1))
    strip = labels == 1 + int(np.argmax(sizes))
    rows, cols = np.flatnonzero(strip.any(axis=1)), np.flatnonzero(strip.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert strip.sum() == height * width  # a filled rectangle
    assert height / width == pytest.approx(224 / 30, rel=0.12)  # the uncovered 30 of 318 columns, full height
