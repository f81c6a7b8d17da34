"""The classic architectures: parameter counts, shapes, layer names, LRN, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit
from tlkit.models.googlenet import INCEPTION_TABLE, inception_module
from tlkit.models.layers import LocalResponseNormalization

FAMILIES = ("lenet", "alexnet", "vgg", "googlenet", "allcnn")
SPECS = [s for fam in FAMILIES for s in tlkit.list_models(family=fam)]
NAMES = [s.name for s in SPECS]

# Counts computed by hand for the entries the catalog leaves without a published
# number (1000 or 10 classes, as the spec says); see the builders' docstrings.
COMPUTED = {
    # conv1 14,208 + conv2 614,656 + conv3 1,180,160 + conv4 4,719,616 + conv5 4,719,104
    # + fc6 75,501,568 + fc7 16,781,312 + fc8 4,097,000
    "zfnet": 107_627_624,
    # 6,990,272 kernel weights + 8,280 biases (paper form, no batch norm)
    "googlenet": 6_998_552,
    # + aux1 3,188,840 + aux2 3,190,888
    "googlenet_aux": 13_378_280,
    # All-CNN-C without conv3 (83,040) and conv6 (331,968)
    "allcnn_strided": 954_730,
    # the same convolutions as All-CNN-C, with max pools in place of the strides
    "allcnn_convpool": 1_369_738,
}


pytestmark = pytest.mark.usefixtures("free_models")


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(2, *shape)).astype("float32")


def test_every_family_is_registered():
    assert {s.family for s in SPECS} == set(FAMILIES)
    assert set(COMPUTED) <= set(NAMES)
    # the hand-computed counts are the ones the specs carry (the contract test checks the builders)
    assert all(tlkit.get_spec(n).params == p for n, p in COMPUTED.items())


# Full-size parameter counts and aliases: tests/test_model_contract.py (every model).


def test_alexnet_conv1_and_pool5():
    model = tlkit.build("alexnet", include_top=False)
    conv1 = model.get_layer("conv1")
    assert conv1.count_params() == (11 * 11 * 3 + 1) * 96 == 34_944
    assert tuple(conv1.output.shape[1:]) == (55, 55, 96)
    assert tuple(model.get_layer("pool1").output.shape[1:]) == (27, 27, 96)
    assert tuple(model.get_layer("pool2").output.shape[1:]) == (13, 13, 256)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    assert model.output.shape[1:] == (6, 6, 256)
    assert [l.name for l in model.layers if isinstance(l, LocalResponseNormalization)] == ["norm1", "norm2"]


@pytest.mark.parametrize(
    "two_tower, expected",
    [
        (False, {"conv2": 614_656, "conv3": 885_120, "conv4": 1_327_488, "conv5": 884_992}),
        # grouped layers keep all biases but half the kernel weights; conv3 is not grouped
        (True, {"conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624}),
    ],
)
def test_alexnet_tower_connectivity(two_tower, expected):
    model = tlkit.build("alexnet", include_top=False, two_tower=two_tower)
    assert {k: model.get_layer(k).count_params() for k in expected} == expected


def test_alexnet_head_names():
    model = tlkit.build("alexnet", num_classes=7)
    names = [l.name for l in model.layers]
    assert names[-6:] == ["flatten", "fc6", "drop6", "fc7", "drop7", "fc8"]
    assert model.get_layer("drop6").rate == 0.5 and model.get_layer("drop7").rate == 0.5


def test_zfnet_intermediate_shapes():
    model = tlkit.build("zfnet", include_top=False)
    shapes = {
        name: tuple(model.get_layer(name).output.shape[1:])
        for name in ("conv1", "pool1", "norm1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")
    }
    assert shapes == {
        "conv1": (110, 110, 96),
        "pool1": (55, 55, 96),
        "norm1": (55, 55, 96),
        "conv2": (26, 26, 256),
        "pool2": (13, 13, 256),
        "conv3": (13, 13, 512),
        "conv4": (13, 13, 1024),
        "conv5": (13, 13, 512),
        "pool5": (6, 6, 512),
    }


@pytest.mark.parametrize(
    "name, convs",
    [
        ("vgg11", ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"]),
        (
            "vgg16c",
            [
                "conv1_1",
                "conv1_2",
                "conv2_1",
                "conv2_2",
                "conv3_1",
                "conv3_2",
                "conv3_3",
                "conv4_1",
                "conv4_2",
                "conv4_3",
                "conv5_1",
                "conv5_2",
                "conv5_3",
            ],
        ),
    ],
)
def test_vgg_layer_names(name, convs):
    model = tlkit.build(name, input_shape=(32, 32, 3), include_top=False)
    assert [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D)] == convs
    assert [l.name for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)] == [
        f"pool{i}" for i in range(1, 6)
    ]


def test_vgg_c_uses_1x1_at_the_end_of_blocks_3_to_5():
    model = tlkit.build("vgg16c", input_shape=(32, 32, 3), include_top=False)
    kernels = {l.name: l.kernel_size for l in model.layers if isinstance(l, keras.layers.Conv2D)}
    assert [k for k, v in kernels.items() if v == (1, 1)] == ["conv3_3", "conv4_3", "conv5_3"]


def test_vgg_a_lrn_normalizes_after_conv1_1():
    model = tlkit.build("vgg11_lrn", input_shape=(32, 32, 3), include_top=False)
    names = [l.name for l in model.layers]
    assert names[names.index("conv1_1") + 1] == "norm1"
    assert "norm1" not in [l.name for l in tlkit.build("vgg11", input_shape=(32, 32, 3), include_top=False).layers]


def test_vgg_refuses_other_sizes_with_its_fc_head():
    with pytest.raises(ValueError, match="224x224"):
        tlkit.build("vgg16_tlkit", input_shape=(256, 256, 3))


def test_unknown_vgg_config():
    from tlkit.models.vgg import vgg

    with pytest.raises(ValueError, match="configuration"):
        vgg(config="F")


# --- forward passes at small sizes -----------------------------------------

# include_top=False: (input size, expected body output shape without batch)
BODY = {
    "lenet5": ((32, 32), (5, 5, 16)),
    "cifar_example": ((32, 32), (16, 16, 12)),
    "alexnet": ((227, 227), (6, 6, 256)),  # min_input 227
    "alexnet_grouped": ((227, 227), (6, 6, 256)),
    "zfnet": ((224, 224), (6, 6, 512)),  # min_input 224
    "vgg11": ((64, 64), (2, 2, 512)),
    "vgg11_lrn": ((64, 64), (2, 2, 512)),
    "vgg13": ((64, 64), (2, 2, 512)),
    "vgg16c": ((64, 64), (2, 2, 512)),
    "vgg16_tlkit": ((64, 64), (2, 2, 512)),
    "vgg19_tlkit": ((64, 64), (2, 2, 512)),
    "googlenet": ((64, 64), (2, 2, 1024)),
    "googlenet_aux": ((64, 64), (2, 2, 1024)),
    "allcnn_c": ((32, 32), (6, 6, 192)),
    "allcnn_strided": ((32, 32), (6, 6, 192)),
    "allcnn_convpool": ((32, 32), (6, 6, 192)),
    **{f"allcnn_{v}{m}": ((32, 32), (6, 6, 192)) for m in ("a", "b") for v in ("", "strided_", "convpool_")},
    "nin": ((32, 32), (8, 8, 192)),
}


def test_body_table_covers_every_entry():
    assert set(BODY) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_body_forward(name):
    size, expected = BODY[name]
    spec = tlkit.get_spec(name)
    shape = (*size, spec.input_shape[2])
    model = tlkit.build(name, input_shape=shape, include_top=False)
    assert isinstance(model.output, keras.KerasTensor)  # a single feature map
    y = np.asarray(model.predict(_x(shape), verbose=0))
    assert y.shape == (2, *expected)
    assert np.all(np.isfinite(y))


# Full models with a forward pass: cheap ones only (VGG-11 stands in for VGG;
# ZFNet's and the other VGGs' heads are checked symbolically below).
TOP_FORWARD = [
    "lenet5",
    "cifar_example",
    "alexnet",
    "alexnet_grouped",
    "vgg11",
    "googlenet",
    "allcnn_c",
    "allcnn_strided",
    "allcnn_convpool",
    "nin",
]


@pytest.mark.parametrize("name", TOP_FORWARD)
def test_top_forward(name):
    spec = tlkit.get_spec(name)
    # fixed heads and the 32x32 nets at their own size, GoogLeNet (GAP head) at 64x64
    small = spec.fixed_input or spec.input_shape[0] == 32
    shape = spec.input_shape if small else (64, 64, spec.input_shape[2])
    model = tlkit.build(name, num_classes=7, input_shape=shape)
    y = np.asarray(model.predict(_x(shape), verbose=0))
    assert y.shape == (2, 7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # softmax by default


@pytest.mark.parametrize("name", ["zfnet", "vgg13", "vgg16_tlkit"])
def test_top_symbolic(name):
    model = tlkit.build(name, num_classes=7)
    assert model.output_shape == (None, 7)
    assert model.get_layer("fc8").activation is keras.activations.softmax


def test_classifier_activation_none_gives_logits():
    model = tlkit.build("allcnn_c", num_classes=7, classifier_activation=None)
    y = np.asarray(model.predict(_x((32, 32, 3)), verbose=0))
    assert y.shape == (2, 7)
    assert not np.allclose(y.sum(axis=1), 1.0)
    fc = tlkit.build("lenet5", classifier_activation=None).get_layer("fc8")
    assert fc.activation is keras.activations.linear


def test_allcnn_variants_layout():
    def convs(m):
        return [(l.name, l.strides[0]) for l in m.layers if isinstance(l, keras.layers.Conv2D)]

    def pools(m):
        return [l.name for l in m.layers if isinstance(l, keras.layers.MaxPooling2D)]

    all_c = tlkit.build("allcnn_c")
    assert convs(all_c) == [
        ("conv1", 1),
        ("conv2", 1),
        ("conv3", 2),
        ("conv4", 1),
        ("conv5", 1),
        ("conv6", 2),
        ("conv7", 1),
        ("conv8", 1),
        ("conv9", 1),
    ]
    assert pools(all_c) == []
    strided = tlkit.build("allcnn_strided")
    assert convs(strided) == [
        ("conv1", 1),
        ("conv2", 2),
        ("conv4", 1),
        ("conv5", 2),
        ("conv7", 1),
        ("conv8", 1),
        ("conv9", 1),
    ]
    convpool = tlkit.build("allcnn_convpool")
    assert [n for n, s in convs(convpool) if s != 1] == []
    assert pools(convpool) == ["pool1", "pool2"]
    assert tuple(all_c.get_layer("conv9").output.shape[1:]) == (6, 6, 10)
    assert all_c.get_layer("predictions").output.shape[1:] == (10,)


def test_lenet5_layers():
    model = tlkit.build("lenet5")
    assert [l.name for l in model.layers[1:]] == ["conv1", "pool1", "conv2", "pool2", "flatten", "fc6", "fc7", "fc8"]
    assert {n: model.get_layer(n).count_params() for n in ("conv1", "conv2", "fc6", "fc7", "fc8")} == {
        "conv1": 156,
        "conv2": 2_416,
        "fc6": 48_120,
        "fc7": 10_164,
        "fc8": 850,
    }


# --- GoogLeNet -------------------------------------------------------------


def test_inception_3a_depth():
    x = keras.Input(shape=(28, 28, 192))
    y = inception_module(
        x,
        filters_1x1=64,
        filters_3x3_reduce=96,
        filters_3x3=128,
        filters_5x5_reduce=16,
        filters_5x5=32,
        pool_proj=32,
        name="inception_3a",
    )
    assert tuple(y.shape[1:]) == (28, 28, 64 + 128 + 32 + 32) == (28, 28, 256)
    model = keras.Model(x, y)
    assert model.get_layer("inception_3a_5x5").kernel_size == (5, 5)


def test_googlenet_table1_shapes():
    model = tlkit.build("googlenet")
    # Szegedy et al. 2015, Table 1, "output size" column
    expected = {
        "conv1": (112, 112, 64),
        "pool1": (56, 56, 64),
        "conv2": (56, 56, 192),
        "pool2": (28, 28, 192),
        "inception_3a": (28, 28, 256),
        "inception_3b": (28, 28, 480),
        "pool3": (14, 14, 480),
        "inception_4a": (14, 14, 512),
        "inception_4b": (14, 14, 512),
        "inception_4c": (14, 14, 512),
        "inception_4d": (14, 14, 528),
        "inception_4e": (14, 14, 832),
        "pool4": (7, 7, 832),
        "inception_5a": (7, 7, 832),
        "inception_5b": (7, 7, 1024),
        "avg_pool": (1024,),
        "predictions": (1000,),
    }
    assert {k: tuple(model.get_layer(k).output.shape[1:]) for k in expected} == expected
    assert len(INCEPTION_TABLE) == 9
    assert model.get_layer("dropout").rate == 0.4
    assert not any(l.name.startswith("aux") for l in model.layers)


def test_googlenet_aux_outputs():
    model = tlkit.build("googlenet_aux", num_classes=7)
    assert model.output_names == ["predictions", "aux1", "aux2"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 7)] * 3
    assert tuple(model.get_layer("aux1_pool").output.shape[1:]) == (4, 4, 512)
    assert tuple(model.get_layer("aux2_pool").output.shape[1:]) == (4, 4, 528)
    assert model.get_layer("aux1_fc").units == 1024
    assert model.get_layer("aux2_dropout").rate == 0.7
    ys = model.predict(_x((224, 224, 3)), verbose=0)
    assert [np.asarray(y).shape for y in ys] == [(2, 7)] * 3


# --- LRN -------------------------------------------------------------------


def lrn_reference(a: np.ndarray, size: int, k: float, alpha: float, beta: float) -> np.ndarray:
    """The paper's formula, written out with loops over channels."""
    n_ch = a.shape[-1]
    out = np.empty_like(a, dtype=np.float64)
    for i in range(n_ch):
        lo, hi = max(0, i - size // 2), min(n_ch - 1, i + size // 2)
        total = np.zeros(a.shape[:-1], dtype=np.float64)
        for j in range(lo, hi + 1):
            total += a[..., j].astype(np.float64) ** 2
        out[..., i] = a[..., i] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the paper's k=2, n=5, alpha=1e-4, beta=0.75
        {"size": 3, "k": 1.0, "alpha": 0.05, "beta": 0.5},
        {"size": 7, "k": 0.5, "alpha": 0.2, "beta": 0.75},  # window wider than half the channels
    ],
)
def test_lrn_matches_numpy_reference(kwargs):
    a = np.random.default_rng(1).normal(0, 30, size=(2, 3, 4, 6)).astype("float32")
    layer = LocalResponseNormalization(**kwargs)
    got = keras.ops.convert_to_numpy(layer(a))
    cfg = {"size": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75, **kwargs}
    want = lrn_reference(a, **cfg)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, a / cfg["k"] ** cfg["beta"], rtol=1e-3)  # the sum matters


def test_lrn_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    a = np.random.default_rng(2).normal(0, 30, size=(2, 5, 5, 16)).astype("float32")
    got = keras.ops.convert_to_numpy(LocalResponseNormalization()(a))
    want = tf.nn.local_response_normalization(a, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lrn_rejects_even_window():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization(size=4)


def test_lrn_model_round_trips_through_keras_file(tmp_path):
    # grouped convs and LRN, both in one small body
    model = tlkit.build("alexnet_grouped", include_top=False)
    x = _x((227, 227, 3), seed=3)
    before = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    norm = loaded.get_layer("norm1")
    assert isinstance(norm, LocalResponseNormalization)
    assert norm.get_config()["k"] == 2.0 and norm.get_config()["size"] == 5
    assert loaded.get_layer("conv2").groups == 2
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
