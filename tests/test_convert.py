"""tlkit.dense.convert: classifiers become fully convolutional, exactly.

Exactness is shown on small nets built here. For a net without padding every
position of the dense map equals the original net on the crop it stands for.
Nets with "same" padding (VGG, AlexNet, ResNet, EfficientNet) cannot have that
whole-image equality: a crop evaluated alone is zero-padded at its own border,
while inside the larger image the same layers see real pixels there. What holds
for them is that the converted head is exact on the feature map: each position
equals the original head applied to that window of the body's output.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit
from tlkit.dense.convert import (
    ConversionError,
    PatchConv2D,
    convert,
    to_fully_convolutional,
)
from tlkit.dense.evaluator import dense_map_size

L = keras.layers
RTOL = 1e-4  # max abs difference <= RTOL * max |reference|


def _randomize_bn(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so inference-mode BN is exercised."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.1, m.shape),
                    rng.uniform(0.5, 1.5, v.shape),
                ]
            )


def _valid_body(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """No padding anywhere: total stride 4, 32x32 -> 6x6x8."""
    x = L.Conv2D(6, 5, activation="relu", name="conv1")(inputs)  # 28
    x = L.MaxPooling2D(2, name="pool1")(x)  # 14
    x = L.Conv2D(8, 3, name="conv2")(x)  # 12
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    return L.MaxPooling2D(2, name="pool2")(x)  # 6


def flatten_net(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = L.Flatten(name="flatten")(_valid_body(inputs))
    x = L.Dense(16, activation="relu", name="fc6")(x)
    x = L.Dropout(0.5, name="drop6")(x)
    x = L.Dense(12, activation="relu", name="fc7")(x)
    x = L.Dense(5, activation="softmax", name="fc8")(x)
    model = keras.Model(inputs, x, name="valid_flatten")
    _randomize_bn(model, seed)
    return model


def gap_net(hidden: int = 0, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = L.GlobalAveragePooling2D(name="avg_pool")(_valid_body(inputs))
    x = L.Dropout(0.2, name="top_dropout")(x)
    if hidden:
        x = L.Dense(hidden, activation="relu", name="head_hidden")(x)
    x = L.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=f"valid_gap{hidden}")
    _randomize_bn(model, seed)
    return model


def finetuned_net(seed: int = 0) -> keras.Model:
    """The layout of tlkit.finetune.heads.build_classifier, with a tiny valid-padding base."""
    from tlkit.models.preprocessing import Preprocess

    keras.utils.set_random_seed(seed)
    b_in = keras.Input((32, 32, 3))
    base = keras.Model(b_in, _valid_body(b_in), name="base")
    base.trainable = False
    inputs = keras.Input((32, 32, 3), name="image")
    x = Preprocess("lite", name="preprocess")(inputs)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    x = L.Dropout(0.2, name="head_dropout")(x)
    x = L.Dense(7, activation="relu", name="head_hidden")(x)
    x = L.Dropout(0.2, name="head_hidden_dropout")(x)
    x = L.Dense(3, activation="softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, x, name="tiny_finetune")
    _randomize_bn(model, seed)
    return model


def crops_of(image: np.ndarray, size: int, step: int, rows: int, cols: int) -> np.ndarray:
    return np.stack(
        [image[i * step : i * step + size, j * step : j * step + size] for i in range(rows) for j in range(cols)]
    )


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    err = float(np.max(np.abs(actual - expected)))
    assert err <= RTOL * float(np.max(np.abs(expected))), f"max abs difference {err:.3g}"


def _image(h: int, w: int, seed: int = 1, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(0, 255 * scale, (h, w, 3))).astype("float32")


@pytest.mark.parametrize(
    "build",
    [flatten_net, gap_net, lambda: gap_net(hidden=9), finetuned_net],
    ids=["flatten_dense", "gap_linear", "gap_hidden_relu", "finetuned_nested"],
)
def test_valid_net_dense_map_equals_crops(build) -> None:
    model = build()
    conv = convert(model)
    assert conv.stride == 4 and conv.native_size == (32, 32)
    image = _image(48, 52, scale=1.0 if build is finetuned_net else 1 / 255)
    dense = keras.ops.convert_to_numpy(conv.model(image[None]))[0]
    rows, cols = (48 - 32) // 4 + 1, (52 - 32) // 4 + 1
    assert dense.shape[:2] == (rows, cols) == conv.output_size(48, 52)
    expected = keras.ops.convert_to_numpy(model(crops_of(image, 32, 4, rows, cols), training=False))
    assert_close(dense.reshape(rows * cols, -1), expected)
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=1e-5)  # softmax over channels at each position


def test_flatten_dense_becomes_valid_conv_with_reshaped_kernel() -> None:
    model = flatten_net()
    conv = convert(model)
    fc6 = conv.model.get_layer("fc6")
    assert isinstance(fc6, L.Conv2D) and fc6.kernel_size == (6, 6) and fc6.padding == "valid"
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fc6.kernel), model.get_layer("fc6").get_weights()[0].reshape(6, 6, 8, 16)
    )
    assert conv.model.get_layer("fc7").kernel_size == (1, 1)
    assert not any(isinstance(layer, L.Dropout) for layer in conv.model.layers)
    assert isinstance(conv.model.get_layer("fc8_softmax"), L.Softmax)
    assert conv.output_activation == "softmax"
    assert conv.model.input_shape == (None, None, None, 3)
    assert any("fc6: Flatten" in line for line in conv.converted)


def test_patch_conv_is_the_same_convolution_and_saves(tmp_path) -> None:
    """fc6 runs as windows @ kernel (one GEMM); it must equal Conv2D's own convolution."""
    conv = convert(flatten_net())
    fc6 = conv.model.get_layer("fc6")
    assert isinstance(fc6, PatchConv2D)
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 8)).astype("float32")
    assert_close(keras.ops.convert_to_numpy(fc6(x)), keras.ops.convert_to_numpy(L.Conv2D.call(fc6, x)))
    conv.model.save(tmp_path / "fcn.keras")
    loaded = keras.saving.load_model(tmp_path / "fcn.keras")
    image = _image(40, 44, scale=1 / 255)[None]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(image)), keras.ops.convert_to_numpy(conv.model(image)), atol=1e-6
    )


def test_gap_head_becomes_conv_then_window_average() -> None:
    conv = convert(gap_net())
    layer = conv.model.get_layer("predictions_avg_pool")
    assert isinstance(layer, L.AveragePooling2D) and layer.pool_size == (6, 6) and layer.strides == (1, 1)
    # With a hidden ReLU layer the pooling must come first (ReLU does not commute with a mean).
    conv2 = convert(gap_net(hidden=9))
    assert isinstance(conv2.model.get_layer("avg_pool"), L.AveragePooling2D)


def test_nested_base_is_kept_and_called_in_inference_mode() -> None:
    conv = convert(finetuned_net())
    base = conv.model.get_layer("base")
    assert isinstance(base, keras.Model) and base.input_shape == (None, None, None, 3)
    assert conv.model.get_layer("preprocess").__class__.__name__ == "Preprocess"


def test_sequential_and_dense_on_feature_map() -> None:
    """A Dense applied directly to a 4D map already acts per position: kept as it is."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Conv2D(4, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Dense(6, activation="relu"),
            L.Flatten(),
            L.Dense(4, activation="softmax"),
        ]
    )
    conv = convert(model)
    image = _image(24, 24, seed=5, scale=1 / 255)
    dense = keras.ops.convert_to_numpy(conv.model(image[None]))[0]
    assert dense.shape == (5, 5, 4) and conv.stride == 2
    assert_close(dense.reshape(25, 4), model.predict(crops_of(image, 16, 2, 5, 5), verbose=0))


def _same_padded(head: str) -> tuple[keras.Model, keras.Model]:
    """(body on variable input, classifier at 32x32) with 'same' padding, as VGG/EfficientNet."""
    keras.utils.set_random_seed(7)
    b_in = keras.Input((None, None, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(b_in)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    body = keras.Model(b_in, x, name="body")  # stride 4: 32x32 -> 8x8
    inputs = keras.Input((32, 32, 3))
    f = body(inputs)
    if head == "flatten":
        y = L.Dense(10, activation="relu", name="fc6")(L.Flatten()(f))
    else:
        y = L.GlobalAveragePooling2D(name="avg_pool")(f)
    y = L.Dense(4, name="logits")(y)  # linear output: compare logits, not saturated softmax
    return body, keras.Model(inputs, y)


@pytest.mark.parametrize("head", ["flatten", "gap"])
def test_same_padding_head_exact_on_feature_map(head: str) -> None:
    body, model = _same_padded(head)
    conv = convert(model)
    image = _image(64, 64, seed=2, scale=1 / 255)
    dense = keras.ops.convert_to_numpy(conv.model(image[None]))[0]  # 64/4 = 16 -> 16-8+1 = 9
    assert dense.shape == (9, 9, 4) and conv.output_activation == "linear"
    fmap = keras.ops.convert_to_numpy(body(image[None]))[0]
    windows = np.stack([fmap[i : i + 8, j : j + 8] for i in range(9) for j in range(9)])
    head_in = keras.Input((8, 8, 8))
    if head == "flatten":
        y = model.get_layer("fc6")(L.Flatten()(head_in))
    else:
        y = L.GlobalAveragePooling2D()(head_in)
    head_model = keras.Model(head_in, model.get_layer("logits")(y))
    assert_close(dense.reshape(81, 4), keras.ops.convert_to_numpy(head_model(windows)))
    # Whole-image equality does not hold: a 32x32 crop is zero-padded at its own border,
    # where the large image has real pixels, so crops away from the image border differ.
    crops = keras.ops.convert_to_numpy(model(crops_of(image, 32, 4, 9, 9)))
    assert np.max(np.abs(crops - dense.reshape(81, 4))) > 10 * RTOL * np.max(np.abs(crops))


def test_variable_size_model_needs_its_training_size() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, strides=2, padding="same")(inputs))
    model = keras.Model(inputs, L.Dense(2, activation="softmax")(x))
    with pytest.raises(ConversionError, match="input_size"):
        convert(model)
    conv = convert(model, input_size=(16, 16))  # an 8x8 map at the training size: the window
    assert conv.native_size == (16, 16) and conv.stride == 2 and conv.output_size(24, 24) == (5, 5)


def test_conversion_shares_weights_and_leaves_the_original_working() -> None:
    model = gap_net()
    x = _image(32, 32, seed=4, scale=1 / 255)[None]
    before = model.predict(x, verbose=0)
    conv = convert(model)
    assert conv.model.get_layer("conv1") is model.get_layer("conv1")  # body reused, not copied
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-6)
    out = keras.ops.convert_to_numpy(conv.model(x))
    assert out.shape == (1, 1, 1, 5)
    assert_close(out.reshape(1, 5), before)


# --- refusals -----------------------------------------------------------------------------


def _refuses(model: keras.Model, layer: str) -> None:
    with pytest.raises(ConversionError) as info:
        to_fully_convolutional(model)
    assert info.value.layer == layer and repr(layer) in str(info.value)


def test_refuses_fixed_reshape_on_a_feature_map() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.Reshape((64, 4), name="to_sequence")(x)
    _refuses(keras.Model(inputs, L.Dense(2)(L.Flatten()(x))), "to_sequence")


def test_refuses_lstm_in_the_head() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inputs))
    x = L.Reshape((1, 4))(x)
    _refuses(keras.Model(inputs, L.LSTM(3, name="lstm")(x)), "lstm")


def test_refuses_flatten_not_followed_by_dense() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.Flatten(name="flat")(L.Conv2D(4, 3)(inputs))
    _refuses(keras.Model(inputs, x), "flat")
    x = L.Flatten(name="flat2")(L.Conv2D(4, 3)(inputs))
    _refuses(keras.Model(inputs, L.Dense(2)(L.Activation("relu")(x))), "flat2")


def test_refuses_subclassed_model() -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.conv = L.Conv2D(2, 3)

        def call(self, x):  # type: ignore[override]
            return self.conv(x)

    with pytest.raises(ConversionError, match="subclassed"):
        convert(Net())


# --- real architectures, shapes only (no forward pass) ----------------------------------------


@pytest.fixture(scope="module")
def vgg16_conversion():
    model = tlkit.build("vgg16")  # keras.applications VGG16, random weights
    return model, convert(model)


def test_vgg16_shapes(vgg16_conversion) -> None:
    model, conv = vgg16_conversion
    assert conv.stride == 32 and conv.native_size == (224, 224)
    assert conv.output_size(224, 224) == (1, 1)
    assert conv.model.compute_output_shape((1, 384, 384, 3)) == (1, 6, 6, 1000)
    assert dense_map_size(conv, 384, 384, stride=16) == (11, 11)
    fc1 = conv.model.get_layer("fc1")
    assert fc1.kernel_size == (7, 7) and tuple(fc1.kernel.shape) == (7, 7, 512, 4096)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fc1.kernel[3, 4, :, :8]),
        model.get_layer("fc1").get_weights()[0][(3 * 7 + 4) * 512 : (3 * 7 + 5) * 512, :8],
    )
    assert [conv.model.get_layer(n).kernel_size for n in ("fc2", "predictions")] == [(1, 1), (1, 1)]
    # The catalog's aliases still name the converted layers.
    spec = tlkit.get_spec("vgg16")
    assert conv.model.get_layer(spec.resolve_layer("fc7")).name == "fc2"


def test_efficientnet_lite0_shape() -> None:
    conv = convert(tlkit.build("efficientnet_lite0"))
    assert conv.stride == 32 and conv.notes == []
    assert conv.model.compute_output_shape((1, 384, 384, 3)) == (1, 6, 6, 1000)
    assert conv.output_size(512, 512) == (10, 10)


def test_keras_applications_with_squeeze_excitation() -> None:
    """MobileNetV3: SE blocks (global pooling kept, noted) and a keepdims 1x1-conv head."""
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3))
    conv = convert(model)
    assert conv.stride == 32 and conv.output_activation == "softmax"
    assert conv.model.compute_output_shape((1, 160, 160, 3)) == (1, 3, 3, 1000)
    assert conv.notes and "squeeze-excitation" in conv.notes[0]


def test_keras_applications_gap_head_exact() -> None:
    """MobileNetV2 ('same' padding): the converted head equals the original head on each window."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(64, 64, 3))
    conv = convert(model)
    assert conv.stride == 32 and conv.notes == []
    image = _image(96, 128, seed=3, scale=1 / 127.5) - 1.0
    dense = keras.ops.convert_to_numpy(conv.model(image[None]))[0]
    assert dense.shape == (2, 3, 1000)
    body = keras.Model(model.input, model.get_layer("out_relu").output)
    body_fcn = to_fully_convolutional(body)  # a body alone converts to itself on any input size
    fmap = keras.ops.convert_to_numpy(body_fcn(image[None]))[0]  # 3x4 map
    assert fmap.shape[:2] == (3, 4) and body.output_shape[1:3] == (2, 2)
    head_in = keras.Input((2, 2, fmap.shape[-1]))
    head = keras.Model(head_in, model.get_layer("predictions")(L.GlobalAveragePooling2D()(head_in)))
    windows = np.stack([fmap[i : i + 2, j : j + 2] for i in range(2) for j in range(3)])
    assert_close(dense.reshape(6, 1000), keras.ops.convert_to_numpy(head(windows)))
