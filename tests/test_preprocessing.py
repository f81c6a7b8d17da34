"""Every preprocessing mode: the published arithmetic, numpy == Keras layer, serializable."""

import keras
import numpy as np
import pytest

from tlkit.models.preprocessing import Preprocess, preprocess_numpy
from tlkit.registry import PREPROCESSING_MODES


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(2, 5, 7, 3)).astype(np.uint8)


def expected(x, mode):
    x = x.astype(np.float64)
    if mode == "caffe":
        return x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    if mode == "tf":
        return x / 127.5 - 1
    if mode == "torch":
        return (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    if mode == "lite":
        return (x - 127) / 128
    if mode == "none":
        return x
    if mode == "unit":
        return x / 255
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_numpy_matches_the_published_formula(pixels, mode):
    out = preprocess_numpy(pixels, mode)
    assert out.dtype == np.float32 and out.shape == pixels.shape
    np.testing.assert_allclose(out, expected(pixels, mode), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_layer_matches_numpy_for_uint8_and_float(pixels, mode):
    layer = Preprocess(mode)
    for x in (pixels, pixels.astype(np.float32)):
        out = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(out, preprocess_numpy(pixels, mode), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_agrees_with_keras_applications(pixels, mode):
    # keras' imagenet_utils implements the three classic modes; tlkit must not drift.
    from keras.applications import imagenet_utils

    ref = imagenet_utils.preprocess_input(pixels.astype(np.float32), mode=mode)
    np.testing.assert_allclose(preprocess_numpy(pixels, mode), ref, rtol=1e-5, atol=1e-4)


def test_lite_range_is_the_published_one():
    out = preprocess_numpy(np.array([0, 127, 255], dtype=np.uint8), "lite")
    np.testing.assert_allclose(out, [-127 / 128, 0.0, 1.0])


def test_config_round_trip_and_saved_model(tmp_path, pixels):
    layer = Preprocess("caffe", name="pre")
    clone = Preprocess.from_config(layer.get_config())
    assert clone.mode == "caffe" and clone.name == "pre"

    inputs = keras.Input((5, 7, 3))
    model = keras.Model(inputs, Preprocess("torch", name="pre")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # registered: no custom_objects needed
    assert loaded.get_layer("pre").get_config()["mode"] == "torch"
    x = pixels.astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_bad_mode_and_bad_channels_are_refused():
    with pytest.raises(ValueError, match="unknown preprocessing mode 'bgr'"):
        Preprocess("bgr")
    with pytest.raises(ValueError, match="unknown preprocessing mode"):
        preprocess_numpy(np.zeros((1, 1, 3)), "imagenet")
    with pytest.raises(ValueError, match="needs 3 RGB channels"):
        preprocess_numpy(np.zeros((2, 2, 1)), "caffe")
    with pytest.raises(ValueError, match="needs 3 RGB channels"):
        Preprocess("torch")(np.zeros((1, 2, 2, 1), dtype=np.float32))
    # Modes without per-channel constants work on any channel count (e.g. grayscale).
    assert preprocess_numpy(np.full((2, 2, 1), 255), "unit").max() == 1.0


@pytest.mark.parametrize("name", ["allcnn_c", "resnet50"])
def test_build_include_preprocessing_runs_the_specs_mode_once_inside(name):
    """tlkit.build(..., include_preprocessing=True): raw pixels in, the spec's mode as one layer."""
    import tlkit
    from tlkit.errors import ModelError
    from tlkit.models.factory import with_preprocessing

    spec = tlkit.get_spec(name)
    shape = (32, 32, 3)
    keras.utils.set_random_seed(3)
    wrapped = tlkit.build(name, weights=None, input_shape=shape, include_top=False, include_preprocessing=True)
    pre = [layer for layer in wrapped.layers if isinstance(layer, Preprocess)]
    assert [p.mode for p in pre] == [spec.preprocessing] and wrapped.input_shape == (None, *shape)
    bare = wrapped.layers[-1]  # the network itself, nested and unchanged
    assert not any(isinstance(layer, Preprocess) for layer in bare.layers)
    raw = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wrapped(raw)),
        keras.ops.convert_to_numpy(bare(preprocess_numpy(raw, spec.preprocessing))),
        rtol=1e-5,
        atol=1e-5,
    )
    # Wrapping a model that already preprocesses would apply the mode twice: refused.
    with pytest.raises(ModelError, match="already preprocesses its input"):
        with_preprocessing(wrapped, spec.preprocessing)
