"""TFLite variants and accuracy, fast: quantise/dequantise arithmetic, top-1 and the threshold,
calibration samples, and a real full-integer model run through :func:`run_tflite`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from tlkit.errors import NotFoundError
from tlkit.export import quantize as q
from tlkit.export import tflite_accuracy as acc
from tlkit.export.probes import synthetic_pixels
from tlkit.export.tflite import save_tflite
from tlkit.models.preprocessing import Preprocess

# --- arithmetic -----------------------------------------------------------------------------------


def test_quantize_and_dequantize_as_tflite_defines_them():
    x = np.array([-1.0, 0.0, 0.26, 0.74, 1.0, 2.0])
    got = acc.quantize(x, 1 / 128, -128, np.int8)  # round(x * 128) - 128, clipped to int8
    np.testing.assert_array_equal(got, np.array([-128, -128, -95, -33, 0, 127], np.int8))
    assert got.dtype == np.int8
    np.testing.assert_allclose(acc.dequantize(got, 1 / 128, -128), [0, 0, 33 / 128, 95 / 128, 1, 255 / 128])
    # uint8 pixels with scale 1, zero point 0 (what model_int8.tflite takes): integer pixels pass unchanged.
    pixels = np.array([0.0, 1.0, 127.0, 254.6, 255.0, 300.0])
    np.testing.assert_array_equal(acc.quantize(pixels, 1.0, 0, np.uint8), [0, 1, 127, 255, 255, 255])
    # Within range the round trip is off by at most half a step.
    r = np.random.default_rng(0).uniform(0, 255 / 256, 1000)  # uint8 at 1/256 reaches 255/256, not 1
    back = acc.dequantize(acc.quantize(r, 1 / 256, 0, np.uint8), 1 / 256, 0)
    assert np.abs(back - r).max() <= 1 / 512 + 1e-7


def test_top1_and_the_threshold():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    assert acc.top1(scores, [1, 1, 2, 0]) == 0.75  # the tie in row 1 goes to class 0, as argmax
    with pytest.raises(ValueError):
        acc.top1(scores[:0], [])
    figures = {"split": "val", "images": 200, "float32": 0.9, "float16": 0.9, "dynamic_int8": 0.885, "int8": 0.74}
    assert acc.accuracy_drops(figures, 2.0) == {"int8": pytest.approx(16.0)}
    assert set(acc.accuracy_drops(figures, 1.0)) == {"dynamic_int8", "int8"}
    assert acc.accuracy_drops(figures, 16.0) == {} and acc.accuracy_drops(figures, 15.9) != {}
    assert acc.accuracy_drops({**figures, "int8": 0.92}, 0.0) == {
        "dynamic_int8": pytest.approx(1.5)
    }  # a gain is no drop
    line = acc.drop_line(figures, acc.accuracy_drops(figures, 2.0), 2.0)
    assert "\n" not in line
    assert line == (
        "quantisation costs more than 2 points of top-1 on 200 val images against model_float32.tflite's "
        "90.0%: model_int8.tflite 74.0% (-16.0 points)"
    )


def test_evenly_spaced_and_the_range_image():
    assert q.evenly_spaced(5, 200).tolist() == [0, 1, 2, 3, 4]
    idx = q.evenly_spaced(1000, 200)
    assert len(idx) == 200 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) >= 4)
    img = q.range_image((4, 6))
    assert img.shape == (1, 4, 6, 3) and img.min() == 0 and img.max() == 255 and (img == 255).mean() == 0.5


def test_configure_refuses_what_it_cannot_build():
    class Converter:
        class target_spec:  # noqa: N801  (mirrors the converter's attribute)
            supported_types: list = []

    with pytest.raises(ValueError, match="calibration images"):
        q.configure(Converter(), "int8", None)
    with pytest.raises(ValueError, match="unknown TFLite variant"):
        q.configure(Converter(), "int4")


# --- calibration samples --------------------------------------------------------------------------


def _folder(root, n_per_class=10):
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            px = np.full((20 + i, 30, 3), 40 + 80 * c, np.uint8) + rng.integers(0, 20, (20 + i, 30, 3), np.uint8)
            Image.fromarray(px).save(root / cls / f"{i:02d}.png")
    return root


def test_folder_pixels_are_spread_over_the_folder(tmp_path):
    root = _folder(tmp_path / "imgs")
    pixels, where = q.folder_pixels(root, (16, 16), "plain", limit=6)
    assert pixels.shape == (6, 16, 16, 3) and pixels.dtype == np.float32
    assert where.endswith("(6 of 30 images, evenly spaced)")
    # Evenly spaced, sorted by path: every class folder is in the sample (its mean tells it apart).
    assert sorted({int(round((m - 50) / 80)) for m in pixels.mean(axis=(1, 2, 3))}) == [0, 1, 2]
    with pytest.raises(NotFoundError, match="not a folder"):
        q.folder_pixels(tmp_path / "nowhere", (16, 16), "plain")


def test_run_samples_come_from_its_own_splits_through_its_pixel_path(tmp_path):
    root = _folder(tmp_path / "imgs")
    config = {"data": str(root), "val_split": 0.2, "seed": 0}
    pixels, labels, where = q.split_pixels(config, "train", (16, 16), limit=6)
    assert pixels.shape == (6, 16, 16, 3) and sorted(set(labels.tolist())) == [0, 1, 2]
    assert "train, 6 evenly spaced of 24" in where
    vpix, vlab, vwhere = q.split_pixels(config, "val", (16, 16), limit=100)
    assert len(vpix) == 6 and sorted(vlab.tolist()) == [0, 0, 1, 1, 2, 2] and "val, all" in vwhere
    said = []
    assert q.calibration_pixels({"data": str(tmp_path / "gone")}, (16, 16), said.append) == (None, None)
    assert len(said) == 1 and "synthetic photo crops instead" in said[0]


# --- a real full-integer model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((24, 24, 3))
    x = Preprocess("tf")(inp)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    d = tmp_path_factory.mktemp("export")
    (d / "assets").mkdir()
    (d / "assets" / "labels.txt").write_text("a\nb\nc\nd\n")
    pixels = np.round(synthetic_pixels((24, 24), n=40))  # integer 0..255, as decoded images are
    card = save_tflite(model, d, size=(24, 24), calibration=pixels[:20])
    return {"dir": d, "card": card, "model": model, "pixels": pixels}


def test_full_integer_model_takes_raw_uint8_pixels(converted):
    d, card, pixels = converted["dir"] / "tflite", converted["card"], converted["pixels"]
    assert sorted(card["models"]) == ["dynamic_int8", "float16", "float32", "int8"]
    io = card["int8_io"]
    assert io["pixels"]["dtype"] == "uint8" and io["pixels"]["zero_point"] == 0
    assert io["pixels"]["scale"] == pytest.approx(1.0, abs=1e-6)  # the range image: 0..255 -> 0..255
    assert io["scores"] == {"dtype": "uint8", "scale": 1 / 256, "zero_point": 0}
    # run_tflite quantises/dequantises; an app feeding raw uint8 pixels gets the same scores.
    runner = acc.tflite_runner(d / "model_int8.tflite")
    raw = runner(pixels=pixels[:8].astype(np.uint8))["scores"]
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(acc.run_tflite(d / "model_int8.tflite", pixels[:8]), raw / 256)
    f32 = acc.run_tflite(d / "model_float32.tflite", pixels)
    np.testing.assert_allclose(f32, acc.keras_scores(converted["model"], pixels), atol=1e-4)
    for variant in ("float16", "dynamic_int8", "int8"):
        got = acc.run_tflite(d / f"model_{variant}.tflite", pixels)
        assert got.shape == (40, 4) and np.abs(got - f32).max() < 0.05, variant


def test_accuracy_report_per_file(converted):
    d, pixels = converted["dir"] / "tflite", converted["pixels"]
    f32 = acc.run_tflite(d / "model_float32.tflite", pixels)
    labels = f32.argmax(1)
    labels[:10] = (labels[:10] + 1) % 4  # 10 of 40 wrong for the float model
    files = {v: f"model_{v}.tflite" for v in ("float32", "int8")}
    report = acc.accuracy_report(d, files, converted["model"], pixels, labels, split="val")
    assert report["images"] == 40 and report["split"] == "val"
    assert report["keras"] == report["float32"] == 0.75
    int8 = acc.run_tflite(d / "model_int8.tflite", pixels)
    assert report["int8"] == float((int8.argmax(1) == labels).mean())
    json.dumps(report)  # plain floats and ints: it goes into the model card


def test_validation_sample_shrinks_for_large_inputs(tmp_path, monkeypatch):
    from tlkit.export import tflite

    config = {"data": str(_folder(tmp_path / "imgs")), "val_split": 0.2, "seed": 0}
    pixels, labels, where = tflite.validation_pixels(config, (16, 16), print)
    assert len(pixels) == len(labels) == 6 and "val, all" in where
    # Room for 4 images of 16x16 float32: 4 of the 6, evenly spaced (classes 0, 1 and 2 all in).
    monkeypatch.setattr(tflite, "ACCURACY_BYTES", 4 * 16 * 16 * 3 * 4)
    monkeypatch.setattr(tflite, "ACCURACY_MIN_IMAGES", 2)
    pixels, labels, where = tflite.validation_pixels(config, (16, 16), print)
    assert len(pixels) == 4 and sorted(set(labels.tolist())) == [0, 1, 2] and "4 evenly spaced of 6" in where
    said = []
    assert tflite.validation_pixels({"data": str(tmp_path / "gone")}, (16, 16), said.append) == (None, None, None)
    assert len(said) == 1 and "measures no accuracy" in said[0]


def _tied_model() -> keras.Model:
    """Scores 1/3 + ~1e-4 for class 1 on every image: float picks class 1, uint8 scores tie (class 0)."""
    inp = keras.Input((24, 24, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    logits = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([0, 1, 0]))
    out = keras.layers.Softmax()(keras.layers.Rescaling(1e-4)(logits(x)))
    return keras.Model(inp, out)


def test_base_without_labels_judges_by_agreement_and_strict_refuses(tmp_path):
    from tlkit.export import tflite

    folder = _folder(tmp_path / "calib")
    kwargs = {"formats": ("saved_model", "tflite"), "calibration_data": str(folder), "strict": True}
    data = tflite.tflite_data(kwargs, size=(24, 24), resize="crop")
    assert "calibration_data" not in kwargs and "strict" not in kwargs  # popped: export_model does not take them
    assert data.calibration.shape == (30, 24, 24, 3) and data.validation_labels is None and data.strict
    assert data.sample_kind == "calibration_data" and data.calibration_source.startswith("--calibration-data")
    assert tflite.tflite_data({"formats": ("saved_model",), "strict": True}, size=(24, 24), resize="crop") is None

    def export_dir(name):
        d = tmp_path / name
        (d / "assets").mkdir(parents=True)
        (d / "assets" / "labels.txt").write_text("a\nb\nc\n")
        return d

    args = {"size": (24, 24), "top_k": 2, "resize": "crop", "verify": True, "probes": None, "tolerance": 1e-4}
    with pytest.raises(tflite.AccuracyDropError, match="changes the top class .* model_int8.tflite on 100.0%"):
        tflite.add_tflite(_tied_model(), export_dir("strict"), data=data, say=print, **args)
    data.strict = False
    card = tflite.add_tflite(_tied_model(), export_dir("warn"), data=data, say=print, **args)
    assert card["accuracy"] is None and "no labelled images" in card["accuracy_unmeasured"]
    assert card["verification"]["sample"]["calibration_data"] == 30
    assert card["verification"]["int8"]["top1_agreement"] == 0.0
    assert card["verification"]["dynamic_int8"]["top1_agreement"] == 1.0
    assert card["accuracy_warning"] == (
        "quantisation changes the top class on more than 2% of 133 check images (30 calibration data, 96 synthetic, "
        "7 probes; no labels, so this bounds the top-1 it costs): model_int8.tflite on 100.0%"
    )
    assert card["int8_calibration"] == {"images": 31, "source": data.calibration_source, "range_image": True}


def test_run_calibrates_on_its_training_images_unless_given_a_folder(tmp_path):
    from tlkit.export import tflite

    config = {"data": str(_folder(tmp_path / "imgs")), "val_split": 0.2, "seed": 0}
    tfl = ("saved_model", "tflite")
    data = tflite.tflite_data({"formats": tfl, "max_accuracy_drop": 0.5}, size=(16, 16), resize="plain", config=config)
    assert data.max_accuracy_drop == 0.5 and not data.strict
    assert data.calibration.shape == (24, 16, 16, 3) and "(train, all: 24 images)" in data.calibration_source
    assert data.validation_labels.tolist() == [0, 0, 1, 1, 2, 2] and data.sample_kind == "validation"
    other = _folder(tmp_path / "other", n_per_class=2)
    kwargs = {"formats": tfl, "calibration_data": str(other)}
    data = tflite.tflite_data(kwargs, size=(16, 16), resize="plain", config=config)
    assert len(data.calibration) == 6 and data.calibration_source.startswith(f"--calibration-data {other}")
    assert len(data.validation) == 6 and data.validation_labels is not None  # top-1 still on the run's val split
