"""Plots are real PNG images with content, written atomically."""

import numpy as np
from PIL import Image

from tlkit import plots


def _assert_png(path, min_size=(300, 200)):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 5, "the picture is blank"
    assert not list(path.parent.glob(".*.tmp.png"))


def test_training_curves(tmp_path):
    hist = [
        {
            "epoch": i,
            "loss": 1 / (i + 1),
            "val_loss": 1.2 / (i + 1),
            "accuracy": i / 6,
            "val_accuracy": i / 7,
            "stage": 1 if i < 3 else 2,
        }
        for i in range(6)
    ]
    _assert_png(plots.training_curves(hist, tmp_path / "curves.png"))


def test_confusion_matrix(tmp_path):
    m = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    _assert_png(plots.confusion_matrix(m, ["a", "b", "c"], tmp_path / "confusion.png"))


def test_score_map_overlay_and_line(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3)).astype(np.uint8)
    _assert_png(plots.score_map_overlay(img, np.eye(4), tmp_path / "heat.png"))
    _assert_png(
        plots.line_plot(
            [1e-5, 1e-3, 1e-1], [2.0, 1.0, 3.0], tmp_path / "lr.png", xlabel="lr", ylabel="loss", logx=True, mark_x=1e-3
        )
    )
