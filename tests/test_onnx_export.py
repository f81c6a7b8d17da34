"""``--format onnx``: ``N/onnx/model.onnx`` beside the SavedModel, checked in ONNX Runtime before it appears.

A tiny model keeps these fast; the whole command on EfficientNet-Lite0 is tests/cli/test_export_onnx.py.
ONNX Runtime is used for real, never mocked.
"""

import json
import sys

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from tlkit.errors import ConfigError
from tlkit.export import onnx_export
from tlkit.export import savedmodel as export
from tlkit.export.probes import synthetic_pixels
from tlkit.export.serving import save_serving_model
from tlkit.models.preprocessing import Preprocess

LABELS = ["bright", "dark", "stripes", "dots", "waves", "noise"]  # 6 > top-k 5: the top-k is a real choice


def _tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3), name="image")
    x = Preprocess("torch", name="preprocess")(inp)  # per-channel mean/std: the preprocessing must be in the graph
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = _tiny_model()
    out = tmp_path_factory.mktemp("models") / "tiny"
    return export.export_model(model, LABELS, out, resize="plain", formats=("saved_model", "onnx"))


def test_onnx_file_card_and_labels(tiny_onnx):
    d = tiny_onnx.path
    entry = json.loads((d / "tlkit.json").read_text())["onnx"]
    assert entry["file"] == "onnx/model.onnx" and (d / entry["file"]).stat().st_size == entry["bytes"]
    assert entry["opset"] == onnx_export.ONNX_OPSET and entry["converter"].startswith("tf2onnx ")
    assert entry["inputs"] == {"pixels": ["float32", [-1, 32, 32, 3]]}
    assert entry["outputs"] == {
        "scores": ["float32", [-1, 6]],
        "top_k_ids": ["int32", [-1, 5]],
        "top_k_scores": ["float32", [-1, 5]],
    }
    assert (d / "onnx" / "labels.txt").read_text() == "\n".join(LABELS) + "\n"
    check = entry["verification"]
    assert check["passed"] is True and check["max_abs_diff_vs_keras"] <= export.TOLERANCE
    assert check["sample"]["synthetic"] == 96 and check["images"] == 96 + check["sample"]["probes"]
    top = check["top_k_vs_saved_model"]
    assert top["k"] == 5 and top["photos"] == check["images"] and top["mismatches"] == 0
    # The file says what the card says: names, types, one named batch dimension.
    session = ort.InferenceSession(str(d / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("pixels", "tensor(float)", ["batch", 32, 32, 3])
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("scores", ["batch", 6]),
        ("top_k_ids", ["batch", 5]),
        ("top_k_scores", ["batch", 5]),
    ]


def test_onnx_runtime_matches_keras_and_the_saved_model_on_raw_pixels(tiny_onnx):
    pixels = synthetic_pixels((32, 32), n=8, seed=3)  # raw 0..255: the graph preprocesses
    session = ort.InferenceSession(str(tiny_onnx.path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    scores, ids, top = session.run(["scores", "top_k_ids", "top_k_scores"], {"pixels": pixels})
    ref = np.asarray(tiny_onnx.model(pixels, training=False))
    np.testing.assert_allclose(scores, ref, atol=1e-5)
    saved = tf.saved_model.load(str(tiny_onnx.path)).signatures["predict_pixels"](pixels=tf.constant(pixels))
    np.testing.assert_array_equal(ids, saved["top_k_ids"].numpy())
    np.testing.assert_allclose(top, np.sort(ref, axis=1)[:, ::-1][:, :5], atol=1e-5)
    assert ids.dtype == np.int32 and len(set(ids[:, 0])) > 1  # not a constant model


def test_a_converted_model_that_differs_is_refused(tmp_path):
    """A converter bug (here: the ONNX file made from other weights) fails the check in ONNX Runtime."""
    model, other = _tiny_model(), _tiny_model(seed=1)
    save_serving_model(model, LABELS, tmp_path, resize="plain")
    onnx_export.save_onnx(other, tmp_path, size=(32, 32), top_k=5)
    pixels = synthetic_pixels((32, 32), n=16)
    with pytest.raises(export.VerificationError, match="ONNX Runtime scores differ from the Keras model's") as exc:
        onnx_export.verify_onnx(tmp_path, model, pixels, photos=16, tolerance=export.TOLERANCE)
    assert "top-5 differs from the SavedModel's on" in str(exc.value)
    # The same file passes against the model it was made from: the check compares, it does not just fail.
    report = onnx_export.verify_onnx(tmp_path, other, pixels, photos=0, tolerance=export.TOLERANCE)
    assert report["passed"] and report["max_abs_diff_vs_keras"] <= export.TOLERANCE


def test_without_the_deploy_extra_onnx_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what find_spec sees for a package not installed
    assert onnx_export.missing_onnx_packages() == ["onnxruntime"]
    with pytest.raises(ConfigError, match=r'needs onnxruntime, not installed here: pip install "tlkit\[deploy\]"'):
        export.export_model(_tiny_model(), LABELS, tmp_path / "m", formats=("saved_model", "onnx"))
    assert not (tmp_path / "m").exists()


def test_top_k_ties_within_the_tolerance_are_not_differences():
    scores = np.array([[0.5, 0.2, 0.2 + 1e-6, 0.1], [0.5, 0.2, 0.3, 0.0]], np.float32)
    ref_ids = np.array([[0, 2, 1], [0, 2, 1]])
    swapped = np.array([[0, 1, 2], [0, 1, 2]])
    assert onnx_export._top_k_mismatches(swapped, ref_ids, scores, 1e-4) == 1  # only row 1 really differs
    assert onnx_export._top_k_mismatches(ref_ids, ref_ids, scores, 1e-4) == 0


def test_constants_a_layer_keeps_become_part_of_the_graph(tmp_path):
    """Keras' Normalization keeps mean and variance as tensors (as EfficientNet-B0 does): tf2onnx leaves
    them as graph inputs a caller would have to feed; the export makes them constants, so ``pixels``
    is the one input and the scores are the Keras model's."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0, 3000.0, 2500.0])(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(x))
    model = keras.Model(inp, keras.layers.Dense(len(LABELS), activation="softmax")(x))
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    onnx_export.save_onnx(model, tmp_path, size=(32, 32), top_k=5)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    pixels = synthetic_pixels((32, 32), n=8)
    ref = np.asarray(model(pixels))
    assert ref.std() > 0.01  # the scores vary: the comparison can fail
    report = onnx_export.verify_onnx(tmp_path, model, pixels, photos=0, tolerance=export.TOLERANCE)
    assert report["max_abs_diff_vs_keras"] <= 1e-5


def test_a_file_onnx_runtime_cannot_run_is_a_verification_error(tmp_path):
    save_serving_model(_tiny_model(), LABELS, tmp_path, resize="plain")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(export.VerificationError, match="ONNX Runtime cannot run the converted model"):
        onnx_export.verify_onnx(tmp_path, _tiny_model(), synthetic_pixels((32, 32), n=2), photos=2, tolerance=1e-4)
