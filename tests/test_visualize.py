"""tlkit.visualize on hand-made models whose answers are known: where the strongest activation is,
which pixels its projection may touch, what it looks like, and how deconvnet and guided differ."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.errors import ConfigError
from tlkit.visualize import api, grid, project, rules

EDGE = np.array([[-1.0, 0.0, 1.0]] * 3, dtype=np.float32)  # a vertical edge: dark left, bright right


def edge_model(activation: str = "relu", nested: bool = False) -> keras.Model:
    """12x12x1 -> conv 3x3 valid (filter 0: EDGE, filter 1: its negative) -> ReLU -> max pool 2 -> 5x5x2."""
    inp = keras.Input((12, 12, 1), name="x")
    y = keras.layers.Conv2D(2, 3, use_bias=False, activation=activation, name="conv")(inp)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    m = keras.Model(inp, y, name="body")
    m.get_layer("conv").set_weights([np.stack([EDGE, -EDGE], -1)[:, :, None, :]])
    if not nested:
        return m
    outer_in = keras.Input((12, 12, 1), name="pixels")
    z = m(keras.layers.Rescaling(1.0, name="prep")(outer_in))
    z = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D(name="gap")(z))
    return keras.Model(outer_in, z, name="outer")


def planted(y: int, x: int, amplitude: float = 1.0) -> np.ndarray:
    """A 12x12x1 image that is zero but for EDGE itself with its top-left corner at (y, x)."""
    img = np.zeros((12, 12, 1), np.float32)
    img[y : y + 3, x : x + 3, 0] = amplitude * EDGE
    return img


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # image 0: the edge at conv position (4, 6) -> pool (2, 3); image 1: twice as strong at (0, 2) -> pool (0, 1)
    return np.stack([planted(4, 6), planted(0, 2, 2.0)])


def test_search_finds_the_planted_position_and_ranks_images(images):
    p = rules.projector(edge_model(), "pool", "guided")
    found = project.strongest(p.model, images)
    assert found.map_hw == (5, 5)
    assert found.positions[0, 0].tolist() == [2, 3] and found.positions[1, 0].tolist() == [0, 1]
    # the filter on itself: the sum of its squares (6), twice that for the stronger image
    np.testing.assert_allclose(found.values[:, 0], [6.0, 12.0], rtol=1e-6)
    assert found.top_images(0, 9) == [1, 0]
    assert project.choose_channels(found, 1, None) == [0]  # channel 0 is the stronger one


def test_geometry_and_projection_support_is_the_receptive_field(images):
    p = rules.projector(edge_model(), "pool", "deconvnet")
    geo = project.geometry(p.model)
    assert (geo.rf, geo.jump, geo.start) == ((4, 4), (2, 2), (0, 0))  # 3x3 conv then 2x2 pool
    assert geo.box(2, 3, (12, 12)) == (4, 6, 8, 10)
    g = project.input_gradients(p.model, images, [(0, 2, 3, 0)])[0, :, :, 0]
    nz = np.argwhere(g != 0)
    assert nz.min(0).tolist() == [4, 6] and nz.max(0).tolist() == [6, 8]  # inside the 4x4 box: the 3x3 winner
    # max pooling's switch picked conv position (4, 6); the ReLU passed +1; the conv's transpose draws the filter
    np.testing.assert_allclose(g[4:7, 6:9], EDGE)


@pytest.mark.parametrize("method", ["deconvnet", "guided"])
def test_projection_of_a_nested_model_is_the_filter(images, method):
    # as a run's model: preprocessing layer, then the body as a nested model, then a head
    p = rules.projector(edge_model(nested=True), "pool", method)
    assert p.replaced == ["conv"] and p.plain_activations == []
    g = project.input_gradients(p.model, images, [(1, 0, 1, 0)])[0, :, :, 0]
    expected = np.zeros((12, 12), np.float32)
    expected[0:3, 2:5] = EDGE
    np.testing.assert_allclose(g, expected)


def two_units(second: float, relu: str) -> keras.Model:
    """pixel -> 1x1 conv to two units (+1, -1) -> ReLU -> 1x1 conv (1, ``second``): for a positive pixel the
    second unit is off in the forward pass while the signal from above reaches it."""
    inp = keras.Input((1, 1, 1))
    if relu == "in_conv":
        h = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="c1")(inp)
    else:
        h = keras.layers.Conv2D(2, 1, use_bias=False, name="c1")(inp)
        h = keras.layers.ReLU(name="r")(h) if relu == "layer" else keras.layers.Activation(relu, name="r")(h)
    out = keras.layers.Conv2D(1, 1, use_bias=False, name="c2")(h)
    m = keras.Model(inp, out)
    m.get_layer("c1").set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
    m.get_layer("c2").set_weights([np.array([1.0, second], np.float32).reshape(1, 1, 2, 1)])
    return m


def plain_gradient(model: keras.Model, x: np.ndarray) -> float:
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = tf.reduce_sum(model(t))
    return float(tape.gradient(y, t).numpy().ravel()[0])


# (plain gradient, deconvnet, guided) at a positive pixel, by the signal (1, second) sent to the two units:
# (1, +1): plain 1 (unit 2 masked), deconvnet 1 - 1 = 0 (unit 2 not masked: its path counts), guided 1 (masked)
# (1, -1): the signal to unit 2 is negative, so both rules drop it as the forward mask does: 1, 1, 1
@pytest.mark.parametrize("relu", ["in_conv", "layer", "relu", "relu6"])
@pytest.mark.parametrize(("second", "want"), [(1.0, (1.0, 0.0, 1.0)), (-1.0, (1.0, 1.0, 1.0))])
def test_deconvnet_ignores_the_forward_mask_guided_keeps_it(relu, second, want):
    m = two_units(second, relu)
    x = np.full((1, 1, 1, 1), 0.5, np.float32)
    got = [plain_gradient(m, x)]
    for method in rules.METHODS:
        p = rules.projector(m, "c2", method)
        assert p.replaced == ["c1" if relu == "in_conv" else "r"]
        got.append(float(project.input_gradients(p.model, x, [(0, 0, 0, 0)]).ravel()[0]))
    assert tuple(got) == want


def test_a_negative_signal_is_rectified_by_both_rules():
    # c2 = (-1, 0): the signal to the active unit is -1; the plain gradient passes it, both rules stop it
    m = two_units(0.0, "layer")
    m.get_layer("c2").set_weights([np.array([-1.0, 0.0], np.float32).reshape(1, 1, 2, 1)])
    x = np.full((1, 1, 1, 1), 0.5, np.float32)
    assert plain_gradient(m, x) == -1.0
    for method in rules.METHODS:
        p = rules.projector(m, "c2", method)
        assert float(project.input_gradients(p.model, x, [(0, 0, 0, 0)]).ravel()[0]) == 0.0


def test_non_relu_activations_keep_their_gradient_and_are_named(images, tmp_path):
    p = rules.projector(edge_model(activation="swish"), "pool", "deconvnet")
    assert p.replaced == [] and p.plain_activations == ["conv (silu)"]  # Keras names swish silu
    plain = keras.Model(*(lambda m: (m.inputs, m.get_layer("pool").output))(edge_model(activation="swish")))
    t = tf.constant(images[:1])
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = plain(t)[0, 2, 3, 0]
    np.testing.assert_allclose(project.input_gradients(p.model, images, [(0, 2, 3, 0)])[0], tape.gradient(y, t)[0])
    rep = api.visualize(edge_model(activation="swish"), "pool", images, ["a", "b"], tmp_path / "s.png", top=1)
    assert "kept their ordinary gradient" in rep["notes"][0] and "conv (silu)" in rep["notes"][0]


def test_relu6_guided_passes_a_saturated_unit():
    # pixel 10: unit 1 is at ReLU6's cap (its true gradient is 0); both rules count it as active
    m = two_units(0.0, "relu6")
    x = np.full((1, 1, 1, 1), 10.0, np.float32)
    assert plain_gradient(m, x) == 0.0
    for method in rules.METHODS:
        p = rules.projector(m, "c2", method)
        assert float(project.input_gradients(p.model, x, [(0, 0, 0, 0)]).ravel()[0]) == 1.0


def test_capped_strongest_values_are_noted(images, tmp_path):
    inp = keras.Input((12, 12, 1))
    y = keras.layers.ReLU(max_value=6.0, name="cap")(keras.layers.Conv2D(1, 3, use_bias=False, name="conv")(inp))
    m = keras.Model(inp, y)
    m.get_layer("conv").set_weights([EDGE[:, :, None, None]])
    rep = api.visualize(m, "cap", images * 2, ["a", "b"], tmp_path / "c.png", top=2)  # 12 and 24, both capped
    assert [p["value"] for p in rep["channels"][0]["picks"]] == [6.0, 6.0]
    assert rep["notes"][0].startswith("2 of the activations shown are at cap's cap (6, a ReLU6)")


def test_projection_colours_zero_grey_and_keeps_signs():
    p = np.array([[[-2.0, 0.0, 1.0]]])
    assert grid.projection_rgb(p).tolist() == [[[0, 128, 191]]]


def test_visualize_writes_the_grid_and_reports(images, tmp_path):
    out = tmp_path / "grid.png"
    rep = api.visualize(edge_model(nested=True), "pool", images, ["a", "b"], out, top=2, channels=2)
    assert grid.grid_size(2, 6) == (88 + 6 * 68 + 4, 2 * 68 + 4)
    with Image.open(out) as im:
        assert im.size == grid.grid_size(2, 6) == tuple(rep["picture_size"])
        assert im.text["Title"].startswith("pool: 2 channels x top 2 of 2 images")
    assert [c["channel"] for c in rep["channels"]] == [0, 1]
    first = rep["channels"][0]["picks"][0]
    assert (first["image"], first["position"], first["box"]) == ("b", [0, 1], [0, 2, 4, 6])
    assert first["deconvnet_inside_box"] == first["guided_inside_box"] == 1.0
    assert rep["receptive_field"] == [4, 4] and rep["notes"] == []


def test_errors_name_the_problem(images, tmp_path):
    with pytest.raises(ConfigError, match="no layer 'pol'.*Did you mean: pool"):
        rules.projector(edge_model(), "pol", "guided")
    with pytest.raises(ConfigError, match="not a feature map"):
        api.visualize(edge_model(nested=True), "head", images, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="channels 0..1"):
        api.visualize(edge_model(), "pool", images, ["a", "b"], tmp_path / "x.png", channel=[2])


def test_a_run_directory_and_its_bases_aliases(tmp_path):
    # a run as tlkit finetune leaves it: best.keras (preprocessing, the body nested as "base", a head),
    # labels.json, config.json naming the base whose aliases --layer accepts
    import json

    from tlkit.finetune.heads import build_classifier

    build_classifier("cifar_example", num_classes=2, weights=None, input_size=(32, 32)).save(tmp_path / "best.keras")
    (tmp_path / "labels.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "config.json").write_text(json.dumps({"base": "cifar_example"}))
    model, base, resize = api.load_source(str(tmp_path), None)
    assert (base, resize, api.resolve_layer("penultimate", base)) == ("cifar_example", "plain", "pool1")
    with pytest.raises(ConfigError, match="--weights is for a registry model"):
        api.load_source(str(tmp_path), "none")
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    rep = api.visualize(model, "pool1", x, ["x", "y", "z"], tmp_path / "g.png", top=2, channels=3)
    # conv 3x3 "same" (one pixel of padding before) then 2x2 pool: 4x4 fields every 2 pixels from -1
    assert (rep["receptive_field"], rep["stride"], rep["relus_replaced"]) == ([4, 4], [2, 2], 1)
    for ch in rep["channels"]:
        for p in ch["picks"]:
            y, x0 = p["position"]
            assert p["box"] == [max(2 * y - 1, 0), max(2 * x0 - 1, 0), min(2 * y + 3, 32), min(2 * x0 + 3, 32)]
            assert p["deconvnet_inside_box"] == p["guided_inside_box"] == 1.0
