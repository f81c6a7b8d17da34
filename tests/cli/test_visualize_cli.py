"""`tlkit visualize` through the installed command: the picture's grid and the report that describes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tlkit
from PIL import Image

pytestmark = pytest.mark.slow  # a model built and run in a subprocess


def test_visualize_writes_the_grid_the_report_describes(tmp_path: Path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    args = ("visualize", "cifar_example", "--weights", "none", "--images", "imgs", "--top", "2", "--layer", "pool1")
    result = tlkit(*args, "--channels", "3", "--out", "g.png", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rep = json.loads(result.stdout)
    # 3 channels x (2 images x (patch, deconvnet, guided)): 88 + 6 x 68 + 4 by 3 x 68 + 4 pixels
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (500, 208) == tuple(rep["picture_size"])
    assert rep["channels_in_layer"] == 12 and rep["map_size"] == [16, 16] and rep["receptive_field"] == [4, 4]
    assert rep["resize"] == "crop"  # a registry model's images: center crop, as tlkit predict
    assert len(rep["channels"]) == 3 and all(len(c["picks"]) == 2 for c in rep["channels"])
    values = [c["picks"][0]["value"] for c in rep["channels"]]
    assert values == sorted(values, reverse=True)  # the strongest channels, strongest first
    assert {p["image"] for c in rep["channels"] for p in c["picks"]} <= {f"imgs/{i}.png" for i in range(3)}
