"""Segmenters (issue 22): FCN-32s/16s/8s and U-Net heads, taps, dilation, conversion, saving, unfreezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit
from tlkit.errors import ModelError
from tlkit.finetune.heads import get_base, unfreeze_top
from tlkit.segment.dilation import dilate
from tlkit.segment.models import HEADS, build_segmenter, check_request, segmenter_info
from tlkit.segment.taps import find_taps, layer_strides

SIZE = (64, 64)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _pixels(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *size, 3)).astype("float32")


def _bilinear(x: np.ndarray, f: int) -> np.ndarray:
    """Bilinear upsampling by ``f`` with half-pixel centres and edges repeated, in numpy (separable)."""
    for axis in (1, 2):
        n = x.shape[axis]
        src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        w = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w
    return x


def _randomise(model, *names, seed=1):
    rng = np.random.default_rng(seed)
    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in layer.get_weights()])


def _top_features(model, x):
    return _np(keras.tree.flatten(get_base(model)(model.get_layer("preprocess")(x), training=False))[-1])


@pytest.fixture(scope="module")
def lite_heads():
    return {
        head: build_segmenter("efficientnet_lite0", head=head, num_classes=3, input_size=SIZE, weights=None)
        for head in HEADS
    }


@pytest.mark.parametrize("head", HEADS)
def test_every_head_gives_per_pixel_logits(lite_heads, head):
    model = lite_heads[head]
    y = _np(model(_pixels(), training=False))
    assert y.shape == (2, *SIZE, 3) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert model.output.name.startswith("logits") or model.layers[-1].name == "logits"
    base = get_base(model)
    assert base.name == "base" and not base.trainable
    info = segmenter_info(model)
    skips = {"fcn32s": 0, "fcn16s": 1, "fcn8s": 2, "unet": 3}[head]
    assert info["head"] == head and info["output_stride"] == 32 and info["base"] == "efficientnet_lite0"
    assert sorted(info["taps"].values()) == sorted([32, 16, 8, 4][: skips + 1])
    if head != "unet":  # FCN: zero-initialised score layers (the reference code's), so zero logits at init
        assert np.abs(y).max() == 0.0


def test_fcn32s_is_bilinear_upsampling_of_the_stride32_scores(lite_heads):
    model = lite_heads["fcn32s"]
    _randomise(model, "score_fr")
    x = _pixels()
    top = _top_features(model, x)
    assert top.shape[1:3] == (2, 2)
    kernel, bias = model.get_layer("score_fr").get_weights()
    scores = top @ kernel[0, 0] + bias
    np.testing.assert_allclose(_np(model(x, training=False)), _bilinear(scores, 32), rtol=1e-4, atol=1e-4)


def test_fcn16s_and_8s_skips_start_at_zero_and_add_their_upsampled_scores(lite_heads):
    model = lite_heads["fcn8s"]
    assert all(np.abs(w).max() == 0 for n in ("score_pool4", "score_pool3") for w in model.get_layer(n).get_weights())
    _randomise(model, "score_fr", seed=2)
    x = _pixels()
    before = _np(model(x, training=False))
    assert np.abs(before).max() > 0
    # The skip-free path: score_fr, x2 and x2 bilinear-initialised transposed convs, fixed bilinear x8.
    s = model.get_layer("score_fr")(_top_features(model, x))
    chain = _np(model.get_layer("upscore_pool3")(model.get_layer("upscore_pool4")(s)))
    np.testing.assert_allclose(before, _bilinear(chain, 8), rtol=1e-4, atol=1e-4)
    kernel, bias = model.get_layer("score_fr").get_weights()
    one_step = _bilinear(_top_features(model, x) @ kernel[0, 0] + bias, 32)
    assert np.abs(before - one_step).max() > 1e-3 * np.abs(one_step).max()  # steps are not one x32 step
    # A non-zero pool3 skip adds exactly its own scores, upsampled x8.
    _randomise(model, "score_pool3", seed=3)
    pool3 = keras.tree.flatten(get_base(model)(model.get_layer("preprocess")(x), training=False))[1]
    kernel, bias = model.get_layer("score_pool3").get_weights()
    extra = _bilinear(_np(pool3) @ kernel[0, 0] + bias, 8)
    np.testing.assert_allclose(_np(model(x, training=False)) - before, extra, rtol=1e-3, atol=1e-4)
    model.get_layer("score_pool3").set_weights([np.zeros_like(w) for w in model.get_layer("score_pool3").weights])


def test_stage_two_unfreezes_the_base_top_blocks(lite_heads):
    model = lite_heads["fcn8s"]
    head_weights = len(model.trainable_weights)
    assert head_weights == 2 * 3 + 2  # score_fr, score_pool4, score_pool3 (kernel, bias) + two x2 upsamplings
    try:
        assert unfreeze_top(model, 2) == ["block7a", "top"]
        names = {w.path.split("/")[0] for w in model.trainable_weights}
        assert {"top_conv", "block7a_project_conv", "score_fr"} <= names and "block6d_project_conv" not in names
        assert "top_bn" not in names  # BatchNorm stays frozen unless train_batchnorm
    finally:
        get_base(model).trainable = False


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "resnet18v2", "vgg11", "resnet50v2"])
def test_stride_aliases_name_real_layers_at_their_stride(name):
    spec = tlkit.get_spec(name)
    body = tlkit.build(name, include_top=False, input_shape=(*SIZE, 3))
    strides = layer_strides(body, SIZE)
    aliases = {a: t for a, t in spec.layers.items() if a.startswith("stride") or a in ("pool3", "pool4")}
    assert {f"stride{s}" for s in (2, 4, 8, 16, 32)} <= set(aliases)
    for alias, target in aliases.items():
        want = {"pool3": 8, "pool4": 16}.get(alias) or int(alias.removeprefix("stride"))
        assert strides.get(target) == want, (alias, target, strides.get(target))
    taps = find_taps(body, SIZE)  # the fallback, without the spec: a layer at every stride, the same where it can
    assert sorted(taps) == [2, 4, 8, 16, 32] and all(strides[t] == s for s, t in taps.items())
    if spec.family != "vgg":  # VGG's aliases are FCN's pools; the fallback takes the conv before each pool
        assert taps == {s: spec.layers[f"stride{s}"] for s in taps}


def test_dilated_body_keeps_weights_and_computes_every_fth_position_of_the_original():
    output_stride = 8  # both stride-2 stages of the top go: dilations 2 then 4
    body = tlkit.build("efficientnet_lite0", include_top=False, input_shape=(*SIZE, 3))
    dense = dilate(body, output_stride)
    assert all(np.array_equal(a, b) for a, b in zip(dense.get_weights(), body.get_weights()))
    f = 32 // output_stride
    assert tuple(dense.output.shape[1:3]) == (SIZE[0] // output_stride, SIZE[1] // output_stride)
    assert dense.get_layer("top_conv").dilation_rate == (1, 1)  # 1x1: nothing to dilate
    dw = {n: dense.get_layer(f"{n}_dwconv") for n in ("block3a", "block4a", "block5a", "block6a", "block7a")}
    assert dw["block3a"].strides == (2, 2)  # stride 4 -> 8 stays
    assert dw["block4a"].strides == (1, 1) and dw["block4a"].dilation_rate == (1, 1)  # 8 -> 16 goes
    assert dw["block5a"].dilation_rate == (2, 2)
    assert dw["block6a"].strides == (1, 1) and dw["block6a"].dilation_rate == (2, 2)  # 16 -> 32 goes
    assert dense.get_layer("block7a_dwconv").dilation_rate == (f, f)
    x = np.random.default_rng(4).normal(0, 1, (1, *SIZE, 3)).astype("float32")
    coarse, fine = _np(body(x, training=False)), _np(dense(x, training=False))
    # TF "same" stride-2 windows are centred on odd pixels: the original grid is every f-th, from f - 1.
    np.testing.assert_allclose(fine[:, f - 1 :: f, f - 1 :: f], coarse, rtol=1e-4, atol=1e-4)


def test_output_stride_in_the_segmenter():
    model = build_segmenter("resnet18", head="fcn8s", num_classes=4, input_size=SIZE, weights=None, output_stride=8)
    info = segmenter_info(model)
    assert info["output_stride"] == 8
    assert info["taps"] == {"conv4_block2_out": 8, "conv3_block2_out": 8, "conv5_block2_out": 8}
    assert _np(model(_pixels(1), training=False)).shape == (1, *SIZE, 4)
    base = get_base(model)
    # Stage 4 loses its stride 2; stage 5's strided conv runs on that 2x denser map, and what follows at 4x.
    assert base.get_layer("conv4_block1_1_conv").strides == (1, 1)
    assert base.get_layer("conv4_block1_1_conv").dilation_rate == (1, 1)
    assert base.get_layer("conv4_block1_2_conv").dilation_rate == (2, 2)
    assert base.get_layer("conv5_block1_1_conv").dilation_rate == (2, 2)
    assert base.get_layer("conv5_block1_2_conv").dilation_rate == (4, 4)


def test_vgg_through_the_dense_conversion(monkeypatch):
    """fc6/fc7 are the classifier's Dense layers as convolutions: at the native 224x224 the centre of the
    segmenter's top map is the classifier's fc7 on the whole image."""
    built = []
    real_build = tlkit.build

    def spy(name, **kwargs):
        model = real_build(name, **kwargs)
        built.append((kwargs.get("include_top", True), model))
        return model

    monkeypatch.setattr(tlkit, "build", spy)
    model = build_segmenter("vgg11", head="fcn32s", num_classes=3, input_size=(224, 224), weights=None)
    full = next(m for top, m in built if top)
    base = get_base(model)
    assert type(base.get_layer("fc6")).__name__ == "PatchConv2D"
    assert base.get_layer("fc6").kernel.shape == (7, 7, 512, 4096) and base.output[-1].shape[1:] == (7, 7, 4096)
    x = _pixels(1, (224, 224), seed=5)
    pre = model.get_layer("preprocess")(x)
    fc7 = _np(keras.Model(full.input, full.get_layer("fc7").output)(pre, training=False))
    top = _top_features(model, x)
    np.testing.assert_allclose(top[0, 3, 3], fc7[0], rtol=1e-3, atol=1e-3)
    assert segmenter_info(model)["taps"] == {"fc7": 32}


def test_saved_and_loaded_as_keras(lite_heads, tmp_path):
    model = lite_heads["unet"]
    _randomise(model, "score")
    x = _pixels()
    model.save(tmp_path / "seg.keras")
    back = keras.saving.load_model(tmp_path / "seg.keras")
    np.testing.assert_array_equal(_np(back(x, training=False)), _np(model(x, training=False)))
    assert segmenter_info(back) == segmenter_info(model)
    assert back.get_layer("dec16_up").get_config()["kernel_initializer"]["config"] == {"factor": 2}


def test_refusals_in_one_line():
    with pytest.raises(ModelError, match=r"vgg16: output stride 16 needs dilating fc6"):
        check_request("vgg16", "fcn8s", 3, None, 16)
    with pytest.raises(ModelError, match="unknown segmentation head 'fcn4s'"):
        check_request("efficientnet_lite0", "fcn4s", 3, None, 32)
    with pytest.raises(ModelError, match="two multiples of 32"):
        check_request("efficientnet_lite0", "fcn8s", 3, (100, 100), 32)
    with pytest.raises(ModelError, match="output stride must be 32, 16 or 8"):
        check_request("efficientnet_lite0", "fcn8s", 3, None, 4)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="c1")(inp)
    x = keras.layers.MaxPooling2D(2, name="p1")(x)
    with pytest.raises(ModelError, match=r"toy: output stride 8 needs pooling layer 'p1'"):
        dilate(keras.Model(inp, x), 8, base="toy")
    with pytest.raises(ModelError) as info:
        check_request("vgg16", "fcn8s", 3, None, 8)
    assert "\n" not in str(info.value)


def test_a_valid_convolution_is_dilated_through_its_own_padding_or_refused():
    """MobileNetV2 / Keras ResNet pad before a 'valid' strided conv: the pad becomes the dilated kernel's half."""
    inp = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 3, strides=16, padding="same", name="c1")(inp)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="c2_pad")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid", name="c2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c3")(x)
    dense = dilate(keras.Model(inp, x), 16)
    assert dense.get_layer("c2_pad").padding == ((1, 1), (1, 1)) and dense.get_layer("c2").strides == (1, 1)
    assert dense.get_layer("c3").dilation_rate == (2, 2) and tuple(dense.output.shape[1:3]) == (4, 4)
    y = keras.layers.Conv2D(4, 3, strides=2, padding="valid", name="c2")(keras.layers.Conv2D(4, 1, strides=16)(inp))
    with pytest.raises(ModelError, match=r"toy: layer 'c2' is a 'valid' convolution without its own ZeroPadding2D"):
        dilate(keras.Model(inp, y), 16, base="toy")
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same")], name="inner")
    z = keras.layers.Conv2D(4, 3, strides=32, padding="same")(inner(inp))
    with pytest.raises(ModelError, match="cannot dilate inside nested model 'inner'"):
        dilate(keras.Model(inp, z), 16, base="toy")
    # A stride-4 step from 8 to 32 keeps stride 2 for output stride 16: the next conv is dilated by 2.
    a = keras.layers.Conv2D(4, 3, strides=8, padding="same")(inp)
    b = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="s4")(a)
    c = keras.layers.Conv2D(4, 3, padding="same", name="after")(b)
    part = dilate(keras.Model(inp, c), 16)
    assert part.get_layer("s4").strides == (2, 2) and part.get_layer("after").dilation_rate == (2, 2)
    t = keras.layers.Conv2DTranspose(4, 2, strides=2, name="up")(c)
    with pytest.raises(ModelError, match="cannot dilate transposed convolution 'up'"):
        dilate(keras.Model(inp, t), 16, base="toy")
