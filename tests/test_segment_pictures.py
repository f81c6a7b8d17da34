"""Segmentation pictures decode, show the blend they claim, and name exactly the classes present."""

import io

import numpy as np
import pytest
from PIL import Image

from tlkit.segment import pictures as P

CLASSES = ["background", "aeroplane", "bicycle", "bird"]


def _png(path):
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")), im.info["Title"].splitlines()


def test_palette_is_the_voc_colour_map():
    pal = P.palette(256)
    assert pal.dtype == np.uint8 and pal.shape == (256, 3)
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]  # person; VOC's void
    assert P.colour_mask(np.array([[0, 3], [255, 1]]), 4).tolist() == [
        [[0, 0, 0], [128, 128, 0]],
        [[224, 224, 192], [128, 0, 0]],
    ]
    with pytest.raises(ValueError, match="class 4"):
        P.colour_mask(np.array([[4]]), 4)


def test_overlay_pixels_are_the_claimed_blend_and_the_legend_lists_the_present_classes(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    mask = np.zeros((40, 48), np.int64)
    mask[5:20, 10:30] = 1
    mask[25:35, 5:15] = 3  # classes 0, 1, 3 present; 2 absent
    mask[0, 0] = 255
    path = P.overlay_png(photo, mask, CLASSES, tmp_path / "o.png", alpha=0.25, title="run x")
    pixels, title = _png(path)
    assert pixels.shape[0] >= 40 and pixels.shape[1] > 48  # photo plus a legend panel on its right
    # (0.75 * photo + 0.25 * colour), rounded half up, at a known pixel of each class
    for y, x, colour in ((10, 20, (128, 0, 0)), (30, 8, (128, 128, 0)), (38, 40, (0, 0, 0)), (0, 0, (224, 224, 192))):
        want = np.floor(0.75 * photo[y, x].astype(float) + 0.25 * np.array(colour) + 0.5).astype(np.uint8)
        assert pixels[y, x].tolist() == want.tolist()
    assert (pixels[:40, :48] == P.blend(photo, mask, 4, 0.25)).all()
    assert title == ["run x", "legend: background, aeroplane, bird, ignore (255)"]
    assert [e[:2] for e in P.legend_entries(mask, CLASSES)] == [
        (0, "background"), (1, "aeroplane"), (3, "bird"), (255, "ignore (255)")
    ]  # fmt: skip
    assert pixels[:, 48:].std() > 5  # the panel holds swatches and words
    with pytest.raises(ValueError, match="must be"):
        P.overlay_png(photo, mask[:20], CLASSES, tmp_path / "bad.png")


def test_confusion_and_examples_pictures_state_their_figures(tmp_path):
    conf = np.array([[4, 1, 1, 0], [1, 4, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]])  # tests/test_segment_metrics.py's
    pixels, title = _png(P.confusion_png(conf, CLASSES, tmp_path / "c.png", title="val split"))
    assert pixels.std() > 5 and title[:2] == ["val split", "pixel accuracy 0.7333, mean IoU 0.5889 (15 pixels)"]
    photo = np.full((16, 16, 3), 120.0, np.float32)
    truth = np.zeros((16, 16), int)
    truth[4:12, 4:12] = 2
    pred = np.zeros_like(truth)
    pred[4:12, 4:8] = 2  # half the square: IoU 0.5 for bicycle, 192/224 for background
    logits = np.eye(4)[truth] * 2.0  # a perfect prediction given as scores
    pixels, title = _png(P.examples_png([(photo, truth, pred), (photo, truth, logits)], CLASSES, tmp_path / "e.png"))
    assert pixels.std() > 5
    assert title == [
        f"example 1: mean IoU {(0.5 + 192 / 224) / 2:.3f}", "example 2: mean IoU 1.000", "legend: background, bicycle"
    ]  # fmt: skip


def test_examples_put_two_models_side_by_side_each_with_its_own_figure(tmp_path):
    photo = np.full((16, 16, 3), 120.0, np.float32)
    truth = np.zeros((16, 16), int)
    truth[4:12, 4:12] = 2
    coarse = np.zeros_like(truth)
    coarse[4:12, 4:8] = 2  # half the square
    path = tmp_path / "two.png"
    pixels, title = _png(
        P.examples_png([(photo, truth, coarse, truth)], CLASSES, path, names=("FCN-32s", "FCN-8s"), title="t")
    )
    half = f"{(0.5 + 192 / 224) / 2:.3f}"
    assert title == ["t", f"example 1: FCN-32s mean IoU {half}, FCN-8s mean IoU 1.000", "legend: background, bicycle"]
    assert pixels.shape[1] > pixels.shape[0]  # four panels in one row
    with pytest.raises(ValueError, match="a name for each"):
        P.examples_png([(photo, truth, coarse, truth)], CLASSES, path, names=("one",))
