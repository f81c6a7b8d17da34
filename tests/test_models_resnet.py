"""tlkit's ResNet family (v1, v2, Wide, ResNeXt) and DenseNet: parameter counts,
shapes, layer names and block prefixes, grouped convs, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit
from tlkit.finetune.heads import layer_blocks
from tlkit.inspection import parameter_counts
from tlkit.models.densenet import densenet
from tlkit.models.resnet import STAGES, resnet

SPECS = tlkit.list_models(family="resnet") + tlkit.list_models(family="densenet")
NAMES = [s.name for s in SPECS]
# Full-size builds of these take seconds each and hold 0.2-0.5 GB of weights.
BIG = {
    "resnet101_tlkit",
    "resnet101v2_tlkit",
    "resnet152_tlkit",
    "resnet152v2_tlkit",
    "wide_resnet101_2",
    "resnext101_32x8d",
}


def _param(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


pytestmark = pytest.mark.usefixtures("free_models")


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(2, *shape)).astype("float32")


# --- an independent count, by arithmetic on the papers' tables -------------------


def _expected_resnet(
    depth: int,
    version: int = 1,
    width_factor: int = 1,
    groups: int = 1,
    width_per_group: int = 64,
    num_classes: int = 1000,
) -> int:
    """weights + biases + BN scale/offset of the architecture as the docstring describes it."""
    kind, counts = STAGES[depth]
    exp = 1 if kind == "basic" else 4
    bn = 2  # scale and offset per channel
    total = 7 * 7 * 3 * 64 + (bn * 64 if version == 1 else 0)  # stem
    c_in = 64
    for planes, n in zip((64, 128, 256, 512), counts):
        width = int(planes * width_per_group * width_factor / 64) * groups
        out = planes * exp
        for i in range(n):
            if version == 2:
                total += bn * c_in  # pre-activation
            stride = 2 if i == 0 and planes != 64 else 1
            if stride != 1 or c_in != out:
                total += c_in * out + (bn * out if version == 1 else 0)  # 1x1 projection
            if kind == "basic":
                total += 9 * c_in * planes + bn * planes  # 3x3
                total += 9 * planes * planes + (bn * planes if version == 1 else 0)  # 3x3
            else:
                total += c_in * width + bn * width  # 1x1
                total += 9 * (width // groups) * width + bn * width  # grouped 3x3
                total += width * out + (bn * out if version == 1 else 0)  # 1x1
            c_in = out
    if version == 2:
        total += bn * c_in  # post_bn
    return total + c_in * num_classes + num_classes


def _expected_densenet(blocks=(6, 12, 24, 16), k=32, num_classes=1000) -> int:
    total = 7 * 7 * 3 * 64 + 2 * 64
    c = 64
    for s, n in enumerate(blocks):
        for _ in range(n):
            total += 2 * c + c * 4 * k + 2 * 4 * k + 9 * 4 * k * k
            c += k
        if s < len(blocks) - 1:
            total += 2 * c + c * (c // 2)
            c //= 2
    return total + 2 * c + c * num_classes + num_classes


def _expected(spec, num_classes: int) -> int:
    kw = dict(spec.builder_kwargs)
    if spec.family == "densenet":
        return _expected_densenet(kw["blocks"], kw["growth_rate"], num_classes)
    return _expected_resnet(num_classes=num_classes, **kw)


# The pre-activation counts (no published number): computed, and checked against
# the arithmetic above. v2 has no stem BN, no BN after each block's last conv or
# on projections; it adds a pre-activation BN per block and post_bn.
V2_COUNTS = {
    "resnet18v2": 11_687_720,
    "resnet34v2": 21_795_880,
    "resnet50v2_tlkit": 25_549_352,
    "resnet101v2_tlkit": 44_541_480,
    "resnet152v2_tlkit": 60_185_128,
}


def test_registry_entries():
    resnets = {s.name for s in tlkit.list_models(family="resnet")}
    assert len(resnets) == 14 and set(V2_COUNTS) <= resnets
    assert NAMES[-1] == "densenet121_tlkit"
    for spec in SPECS:
        assert spec.builder in ("tlkit.models.resnet:resnet", "tlkit.models.densenet:densenet")


# Full-size counts against the published numbers: tests/test_model_contract.py; the
# builders' arithmetic is checked at small size below (test_small_forward).


def test_arithmetic_matches_published_counts():
    # The independent arithmetic reproduces torchvision's numbers, so it can vouch for v2.
    assert _expected_resnet(18) == 11_689_512
    assert _expected_resnet(152) == 60_192_808
    assert _expected_resnet(101, width_factor=2) == 126_886_696
    assert _expected_resnet(101, groups=32, width_per_group=8) == 88_791_336
    assert _expected_densenet() == 7_978_856


@pytest.mark.parametrize("name", _param(NAMES))
def test_small_forward(name):
    spec = tlkit.get_spec(name)
    model = tlkit.build(name, input_shape=(64, 64, 3), num_classes=7)
    assert parameter_counts(model)["paper"] == _expected(spec, 7)
    for alias in spec.layers:
        model.get_layer(spec.resolve_layer(alias))
    y = keras.ops.convert_to_numpy(model(_x((64, 64, 3)), training=False))
    assert y.shape == (2, 7)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "name, last, channels",
    [
        ("resnet18", "conv5_block2_out", 512),
        ("resnet18v2", "post_relu", 512),
        ("resnet50_tlkit", "conv5_block3_out", 2048),
        ("densenet121_tlkit", "relu", 1024),
    ],
)
def test_body_feature_map(name, last, channels):
    model = tlkit.build(name, input_shape=(64, 64, 3), include_top=False)
    assert model.layers[-1].name == last
    y = keras.ops.convert_to_numpy(model(_x((64, 64, 3)), training=False))
    assert y.shape == (2, 2, 2, channels)
    assert y.min() >= 0  # every body ends in a ReLU


def _inbound(model, layer_name):
    """Names of the layers feeding ``layer_name``."""
    inputs = model.get_layer(layer_name).input
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return {t._keras_history.operation.name for t in inputs}


def test_v1_layout():
    model = resnet(depth=50, input_shape=(64, 64, 3), num_classes=7)
    names = [l.name for l in model.layers]
    assert names[1:8] == [
        "conv1_pad",
        "conv1_conv",
        "conv1_bn",
        "conv1_relu",
        "pool1_pad",
        "pool1_pool",
        "conv2_block1_1_conv",
    ]
    assert not any("preact" in n or n.startswith("post_") for n in names)
    assert all(not l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    for l in model.layers:
        if isinstance(l, keras.layers.BatchNormalization):
            assert l.epsilon == 1e-5 and l.momentum == 0.9
    # v1.5: the stride is on the 3x3 conv; projection shortcuts are 1x1/2 conv + BN.
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)
    assert _inbound(model, "conv3_block1_add") == {"conv3_block1_0_bn", "conv3_block1_3_bn"}
    assert _inbound(model, "conv3_block2_add") == {"conv3_block1_out", "conv3_block2_3_bn"}
    assert isinstance(model.get_layer("conv3_block2_out"), keras.layers.Activation)
    assert "conv3_block2_0_conv" not in names  # identity shortcut inside a stage


def test_v2_differs_structurally_from_v1():
    v1 = resnet(depth=18, input_shape=(64, 64, 3), num_classes=7)
    v2 = resnet(depth=18, version=2, input_shape=(64, 64, 3), num_classes=7)
    assert "conv1_bn" in [l.name for l in v1.layers]
    assert "conv1_bn" not in [l.name for l in v2.layers]
    assert "post_bn" in [l.name for l in v2.layers] and "post_bn" not in [l.name for l in v1.layers]
    for prefix in _block_prefixes(v2):
        first = next(l for l in v2.layers if l.name.startswith(prefix + "_"))
        # Pre-activation: the first layer of every block is its BatchNorm ...
        assert isinstance(first, keras.layers.BatchNormalization), prefix
        assert first.name == f"{prefix}_preact_bn"
        # ... and the block ends in the bare addition (no ReLU after it).
        assert isinstance(v2.get_layer(f"{prefix}_out"), keras.layers.Add)
    for prefix in _block_prefixes(v1):
        # Post-activation: a v1 block starts with its (padded) conv and ends in a ReLU.
        first = next(l for l in v1.layers if l.name.startswith(prefix + "_"))
        assert isinstance(first, keras.layers.ZeroPadding2D), prefix
        assert isinstance(v1.get_layer(f"{prefix}_out"), keras.layers.Activation)
    # The projection reads the pre-activated input; an identity shortcut the raw one.
    assert _inbound(v2, "conv3_block1_0_conv") == {"conv3_block1_preact_relu"}
    assert _inbound(v2, "conv3_block2_out") == {"conv3_block1_out", "conv3_block2_2_conv"}
    assert _inbound(v2, "post_bn") == {"conv5_block2_out"}


def test_resnext_and_wide_widths():
    x50 = resnet(depth=50, groups=32, width_per_group=4, input_shape=(32, 32, 3), num_classes=7)
    grouped = {l.name: l.groups for l in x50.layers if isinstance(l, keras.layers.Conv2D)}
    assert all(g == (32 if n.endswith("_2_conv") else 1) for n, g in grouped.items())
    # Inner width int(planes * 4/64) * 32: 128 in conv2 ... 1024 in conv5; output 4 * planes.
    assert x50.get_layer("conv2_block1_2_conv").filters == 128
    assert x50.get_layer("conv5_block3_2_conv").filters == 1024
    assert x50.get_layer("conv5_block3_3_conv").filters == 2048
    assert x50.get_layer("conv4_block1_2_conv").kernel.shape == (3, 3, 512 // 32, 512)
    assert x50.name == "resnext50_32x4d"
    del x50
    keras.backend.clear_session()
    w50 = resnet(depth=50, width_factor=2, input_shape=(32, 32, 3), num_classes=7)
    assert w50.get_layer("conv2_block1_1_conv").filters == 128
    assert w50.get_layer("conv2_block1_2_conv").filters == 128
    assert w50.get_layer("conv2_block1_3_conv").filters == 256
    assert w50.get_layer("conv5_block1_2_conv").filters == 1024
    assert w50.name == "wide_resnet50_2"


def test_grouped_conv_equals_two_convs_on_channel_halves():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 9, 4)).astype("float32")
    grouped = keras.layers.Conv2D(6, 3, groups=2, use_bias=False)
    y = keras.ops.convert_to_numpy(grouped(x))
    kernel = keras.ops.convert_to_numpy(grouped.kernel)  # (3, 3, 4 / 2, 6)
    halves = []
    for g in range(2):
        c = keras.layers.Conv2D(3, 3, use_bias=False)
        c.build((None, 9, 9, 2))
        c.kernel.assign(kernel[..., 3 * g : 3 * (g + 1)])
        halves.append(keras.ops.convert_to_numpy(c(x[..., 2 * g : 2 * (g + 1)])))
    np.testing.assert_allclose(y, np.concatenate(halves, axis=-1), rtol=1e-5, atol=1e-5)
    # And it is not a dense conv: the first output group ignores the second input half.
    x2 = x.copy()
    x2[..., 2:] = 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(grouped(x2))[..., :3], y[..., :3], rtol=1e-5, atol=1e-5)


def _block_prefixes(model):
    return [k for k, _ in layer_blocks(model) if k != "top"]


def test_resnet18_blocks_for_unfreezing():
    # tlkit.finetune.heads.layer_blocks groups weighted layers by the convS_blockI_ prefix; the
    # stem joins the first block, so "unfreeze the top N" never splits a residual block.
    model = resnet(depth=18, input_shape=(32, 32, 3), num_classes=7, include_top=False)
    blocks = layer_blocks(model)
    assert [k for k, _ in blocks] == [f"conv{s}_block{i}" for s in (2, 3, 4, 5) for i in (1, 2)]
    assert [l.name for l in blocks[0][1]][:2] == ["conv1_conv", "conv1_bn"]
    assert [l.name for l in blocks[-1][1]] == [f"conv5_block2_{n}" for n in ("1_conv", "1_bn", "2_conv", "2_bn")]
    weighted = sorted(l.name for _, ls in blocks for l in ls)
    assert weighted == sorted(l.name for l in model.layers if l.weights)  # each weighted layer exactly once


def test_densenet121_layout():
    model = densenet(blocks=(6, 12, 24, 16), input_shape=(32, 32, 3), num_classes=7)
    assert model.name == "densenet121"
    blocks = dict(layer_blocks(model))
    names = [k for k in blocks if k != "top"]
    assert len(names) == 6 + 12 + 24 + 16 and names[0] == "conv2_block1" and names[-1] == "conv5_block16"
    # a transition joins the dense block after it; the final BatchNorm is the "top" block
    assert [l.name for l in blocks["conv3_block1"]][:2] == ["pool2_bn", "pool2_conv"]
    assert [l.name for l in blocks["top"]] == ["bn", "predictions"]  # include_top: the head too
    assert model.get_layer("conv2_block1_1_conv").filters == 128  # bottleneck 4k
    assert model.get_layer("conv2_block1_2_conv").filters == 32  # growth k
    # Compression 0.5 at each transition: (64 + 6*32)/2, (128 + 12*32)/2, (256 + 24*32)/2.
    assert [model.get_layer(f"pool{s}_conv").filters for s in (2, 3, 4)] == [128, 256, 512]
    assert model.get_layer("conv5_block16_concat").output.shape[-1] == 1024
    assert all(not l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert {l.epsilon for l in model.layers if isinstance(l, keras.layers.BatchNormalization)} == {1e-5}


def test_classifier_activation_none_gives_logits():
    model = resnet(depth=18, input_shape=(32, 32, 3), num_classes=5, classifier_activation=None)
    y = keras.ops.convert_to_numpy(model(_x((32, 32, 3)), training=False))
    assert y.shape == (2, 5) and not np.allclose(y.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 20},
        {"depth": 50, "version": 3},
        {"depth": 18, "groups": 32},
        {"depth": 34, "width_factor": 2},
        {"depth": 50, "groups": 0},
    ],
)
def test_resnet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        resnet(**kwargs)


def test_densenet_rejects_bad_arguments():
    with pytest.raises(ValueError):
        densenet(blocks=())
    with pytest.raises(ValueError):
        densenet(blocks=(6, 12), compression=0.0)
