"""The lecture notes' remaining architectures: All-CNN models A and B, the CIFAR ResNets of He et
al. 2015, FractalNet and Inception-v4 (Inception-ResNet-v2 is Keras' own). Their full-size
counts are in tests/test_model_contract.py; here, the same counts by independent arithmetic and
the structural facts the papers state (layer counts, kernels, strides, path lengths)."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest

import tlkit
from tlkit.models.cifar_resnet import PadShortcut
from tlkit.models.fractalnet import CHANNELS, fractalnet

pytestmark = pytest.mark.usefixtures("free_models")


def _conv(k: int, cin: int, cout: int, *, bias: bool = True, bn: bool = False) -> int:
    return k * k * cin * cout + (cout if bias else 0) + (2 * cout if bn else 0)


# --- All-CNN (Springenberg et al. 2015, Table 1) ----------------------------------------------

# Per base model: the (kernel) convs of each stage before its pool.
_KERNELS = {"a": (5,), "b": (5, 1), "c": (3, 3)}


def _allcnn_count(model: str, variant: str) -> int:
    total, cin = 0, 3
    for filters in (96, 192):
        for k in _KERNELS[model]:
            total, cin = total + _conv(k, cin, filters), filters
        if variant in ("all", "convpool"):  # the 3x3 conv that replaces / precedes the pool
            total += _conv(3, filters, filters)
    return total + _conv(3, 192, 192) + _conv(1, 192, 192) + _conv(1, 192, 10)


def test_allcnn_counts_by_arithmetic():
    names = {"all": "allcnn_{m}", "strided": "allcnn_strided_{m}", "convpool": "allcnn_convpool_{m}"}
    for model in "ab":
        for variant, pattern in names.items():
            assert tlkit.get_spec(pattern.format(m=model)).params == _allcnn_count(model, variant)
    assert _allcnn_count("c", "strided") == tlkit.get_spec("allcnn_strided").params == 954_730
    assert _allcnn_count("c", "all") == tlkit.get_spec("allcnn_c").params == 1_369_738
    # The notes' rounded figures (Table 3), and where the exact count falls short of them.
    assert (_allcnn_count("a", "strided"), _allcnn_count("a", "all")) == (839_242, 1_254_250)  # ≈0.9M, ≈1.28M
    assert (_allcnn_count("b", "strided"), _allcnn_count("b", "all")) == (885_610, 1_300_618)  # ≈1M, ≈1.35M
    assert tlkit.get_spec("All-CNN-B").name == "allcnn_b" and tlkit.get_spec("Strided-CNN-A").name == "allcnn_strided_a"


@pytest.mark.parametrize(
    "name, layout",
    [
        # (layer, kernel, stride) of every conv and pool, in order.
        ("allcnn_a", "conv1 5 1, conv2 3 2, conv3 5 1, conv4 3 2, conv5 3 1, conv6 1 1, conv7 1 1"),
        ("allcnn_strided_a", "conv1 5 2, conv3 5 2, conv5 3 1, conv6 1 1, conv7 1 1"),
        (
            "allcnn_convpool_a",
            "conv1 5 1, conv2 3 1, pool1 3 2, conv3 5 1, conv4 3 1, pool2 3 2, conv5 3 1, conv6 1 1, conv7 1 1",
        ),
        (
            "allcnn_b",
            "conv1 5 1, conv2 1 1, conv3 3 2, conv4 5 1, conv5 1 1, conv6 3 2, conv7 3 1, conv8 1 1, conv9 1 1",
        ),
        ("allcnn_strided_b", "conv1 5 1, conv2 1 2, conv4 5 1, conv5 1 2, conv7 3 1, conv8 1 1, conv9 1 1"),
    ],
)
def test_allcnn_layouts(name, layout):
    model = tlkit.build(name)
    got = [
        f"{layer.name} {layer.pool_size[0] if hasattr(layer, 'pool_size') else layer.kernel_size[0]} {layer.strides[0]}"
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))
    ]
    assert ", ".join(got) == layout
    penultimate = model.get_layer(tlkit.get_spec(name).layers["penultimate"])
    assert tuple(penultimate.output.shape[1:]) == (6, 6, 192)  # "global averaging over 6x6"


# --- CIFAR ResNets (He et al. 2015, section 4.2 and Table 6) ----------------------------------

_TABLE6 = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}  # "# params" in millions


def _cifar_resnet_count(depth: int) -> int:
    n = (depth - 2) // 6
    total = _conv(3, 3, 16, bias=False, bn=True)
    for cin, f in ((16, 16), (16, 32), (32, 64)):  # option A shortcuts: no parameters
        total += _conv(3, cin, f, bias=False, bn=True) + (2 * n - 1) * _conv(3, f, f, bias=False, bn=True)
    return total + 64 * 10 + 10


def test_cifar_resnet_counts_match_table6():
    for depth, millions in _TABLE6.items():
        count = _cifar_resnet_count(depth)
        assert round(count / 1e6, 1 if millions >= 1 else 2) == millions, depth
    for spec in tlkit.list_models(family="cifar_resnet"):
        assert spec.params == _cifar_resnet_count(spec.builder_kwargs["depth"]), spec.name
    assert {s.name for s in tlkit.list_models(family="cifar_resnet")} >= {
        "resnet20_cifar",
        "resnet56_cifar",
        "resnet110_cifar",
        "resnet1202_cifar",
    }


def test_resnet110_has_110_weighted_layers_and_option_a_shortcuts():
    model = tlkit.build("resnet110_cifar")
    weighted = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(weighted) == 110
    assert {layer.kernel_size for layer in weighted[:-1]} == {(3, 3)}  # no 1x1 projection anywhere
    shortcuts = [layer.name for layer in model.layers if isinstance(layer, PadShortcut)]
    assert shortcuts == ["conv3_block1_0_shortcut", "conv4_block1_0_shortcut"]
    assert tuple(model.get_layer("conv4_block18_out").output.shape[1:]) == (8, 8, 64)


def test_pad_shortcut_subsamples_and_pads_with_zeros():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(PadShortcut(5)(x))
    assert y.shape == (2, 3, 3, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()


def test_a_graph_deeper_than_the_recursion_limit_loads(tmp_path):
    """Keras maps a graph with one frame per layer; loading a model with PadShortcut layers
    (ResNet-1202: ~5,400 layers in a row) raises the limit, as building one does. Here a chain
    of 300 layers loads under a limit 100 frames above the test's own stack."""
    old = sys.getrecursionlimit()
    inputs = keras.Input((4, 4, 2))
    x = inputs
    for i in range(300):
        x = PadShortcut(2, 1, name=f"s{i}")(x)
    keras.Model(inputs, x).save(tmp_path / "deep.keras")
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    try:
        sys.setrecursionlimit(depth + 100)
        loaded = keras.saving.load_model(tmp_path / "deep.keras")
        assert len(loaded.layers) == 301 and sys.getrecursionlimit() == 20_000
    finally:
        sys.setrecursionlimit(old)


# --- FractalNet (Larsson et al. 2016) ----------------------------------------------------------


def _longest_conv_path(model: keras.Model) -> int:
    depth: dict[str, int] = {}
    for layer in model.layers:  # topological order
        parents = [t._keras_history[0].name for node in layer._inbound_nodes for t in node.input_tensors]
        depth[layer.name] = max((depth[p] for p in parents), default=0) + isinstance(layer, keras.layers.Conv2D)
    return depth[model.layers[-1].name]


def test_fractalnet_20_layers_and_count():
    spec = tlkit.get_spec("fractalnet20")
    # The structure at 1/16 of the width (the same graph, a fraction of the build time).
    model = fractalnet(**spec.builder_kwargs, channels=tuple(c // 16 for c in CHANNELS))
    assert _longest_conv_path(model) == 20  # B x 2^(C-1) = 5 x 4
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 5 * 7  # 2^C - 1 per block
    joins = [layer for layer in model.layers if isinstance(layer, keras.layers.Average)]
    assert [len(j._inbound_nodes[0].input_tensors) for j in joins[:2]] == [2, 3] and len(joins) == 10
    # Column c's first conv reads the block input (C of them per block); the others c -> c.
    total, cin = 0, 3
    for f in CHANNELS:
        total += 3 * _conv(3, cin, f, bias=False, bn=True) + 4 * _conv(3, f, f, bias=False, bn=True)
        cin = f
    assert spec.params == total + 512 * 10 + 10 == 33_724_618


# --- Inception-v4 (Szegedy et al. 2016, Figures 3-9) -------------------------------------------


@pytest.mark.slow
def test_inception_v4_grids_and_modules():
    model = tlkit.build("inception_v4", include_top=False)
    concats = [layer.name.removesuffix("_concat") for layer in model.layers if layer.name.endswith("_concat")]
    # The stem's 3 joins, 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B, 3 x Inception-C.
    assert [c[-2:] for c in concats] == "3a 4a 5a 5b 5c 5d 5e 6a 6b 6c 6d 6e 6f 6g 6h 7a 7b 7c 7d".split()
    shape = {n: tuple(model.get_layer(f"inception_{n}_concat").output.shape[1:]) for n in ("5a", "6a", "7a", "7d")}
    assert shape == {
        "5a": (35, 35, 384),  # Figure 3's stem output
        "6a": (17, 17, 1024),  # after Reduction-A
        "7a": (8, 8, 1536),  # after Reduction-B
        "7d": (8, 8, 1536),
    }
