"""`tlkit inspect` reproduces the seeds' hand-computed VGG16 table; conv arithmetic is exact."""

import json

import keras
import pytest

from tlkit.cli import main as cli
from tlkit.inspection import conv_output_size, layer_table, seed_notes


def test_conv_output_size_formula():
    assert conv_output_size(227, 11, 4, 0) == 55  # AlexNet CONV1
    assert conv_output_size(224, 3, 1, 1) == 224  # VGG 3x3 pad 1
    assert conv_output_size(7, 3, 1, 0) == 5
    assert conv_output_size(7, 3, 2, 0) == 3
    assert conv_output_size(10, 3, 1, 2, D=2) == 10  # dilation 2: effective 5x5


def test_conv_output_size_rejects_non_integer():
    with pytest.raises(ValueError, match="4.5 is not an integer"):
        conv_output_size(10, 3, 2, 0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_output_size(2, 5, 1, 0)


def test_three_stacked_3x3_convs_see_7x7():
    x = keras.Input((32, 32, 3))
    y = x
    for i in range(3):
        y = keras.layers.Conv2D(4, 3, padding="same", name=f"c{i}")(y)
    t = layer_table(keras.Model(x, y))
    assert [r["receptive_field"] for r in t["rows"][1:]] == [[3, 3], [5, 5], [7, 7]]


def test_stride_and_pool_grow_the_receptive_field():
    x = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # rf 3, jump 2
    y = keras.layers.MaxPooling2D(2)(y)  # rf 3 + 1*2 = 5, jump 4
    y = keras.layers.Conv2D(4, 3, padding="same")(y)  # rf 5 + 2*4 = 13
    t = layer_table(keras.Model(x, y))
    assert [r["receptive_field"][0] for r in t["rows"]] == [1, 3, 5, 13]
    assert t["rows"][-1]["stride"] == [4, 4]


def test_merge_takes_the_largest_receptive_field_and_counts_mult_adds():
    x = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(x)
    b = keras.layers.Conv2D(3, 5, padding="same", name="b")(x)
    c = keras.layers.Concatenate(name="cat")([a, b])
    t = {r["layer"]: r for r in layer_table(keras.Model(x, c))["rows"]}
    assert t["cat"]["receptive_field"] == [5, 5]
    assert t["cat"]["output_shape"] == [8, 8, 6]
    assert t["b"]["mult_adds"] == 8 * 8 * 3 * 5 * 5 * 2
    assert (t["b"]["weights"], t["b"]["biases"]) == (5 * 5 * 2 * 3, 3)


@pytest.fixture(scope="module")
def vgg16_table():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["inspect", "vgg16", "--json"]) == 0
    keras.backend.clear_session()
    return json.loads(buf.getvalue())


# The CS231n VGG16 walk-through, row by row: (output shape, activations, weights), as the notes state it.
from tlkit.seed_figures_cases import VGG16_WALKTHROUGH as SEED_VGG16  # noqa: E402


def test_inspect_vgg16_reproduces_the_seed_table(vgg16_table):
    rows = [r for r in vgg16_table["rows"] if r["type"] != "Flatten"]
    got = [(r["output_shape"], r["activations"], r["weights"]) for r in rows]
    assert got == SEED_VGG16
    assert rows[1]["activation_bytes"] == 4 * 3_211_264
    fc6 = next(r for r in rows if r["layer"] == "fc1")
    assert fc6["weights"] == 102_760_448


def test_inspect_vgg16_totals_and_seed_note(vgg16_table):
    t = vgg16_table["totals"]
    assert t["params"] == 138_357_544 == t["params_keras"]
    true_sum = sum(a for _, a, _ in SEED_VGG16)
    assert t["activations"] == true_sum == 15_237_608
    assert t["activations_forward_backward"] == 2 * true_sum
    # 3x3 conv layers dominate: 15.35 G conv + 0.12 G FC multiply-adds
    assert t["mult_adds"] == 15_470_264_320
    assert any("24M" in n and "15,237,608" in n for n in vgg16_table["notes"])
    assert vgg16_table["rows"][-1]["receptive_field"] == [224, 224]
    pool5 = next(r for r in vgg16_table["rows"] if r["layer"] == "block5_pool")
    assert pool5["receptive_field"] == [212, 212] and pool5["stride"] == [32, 32]


def test_inspect_text_table_and_input_size(capsys):
    assert cli.main(["inspect", "vgg16", "--input-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "block5_pool" in out and "2x2x512" in out
    assert "showing the convolutional body only" in out
    assert "fc1" not in out
    # the seeds' 224x224 figures are not set beside the 64x64 body's totals
    assert "the figure this table reproduces" not in out
    assert "are about 224x224x3 input and the whole network (138,357,544 parameters)" in out


def test_seed_note_at_another_input_size_says_so(capsys):
    """Issue 11: the seeds' note is about 224x224; at 64x64 it must not read as if about 64x64."""
    assert cli.main(["inspect", "vgg16_tlkit", "--input-size", "64", "64", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    keras.backend.clear_session()
    assert table["totals"]["activations"] == 1_243_136  # the 64x64 body
    assert not any("1,243,136" in n or "reproduces" in n for n in table["notes"])
    (note,) = [n for n in table["notes"] if "CS231n" in n]
    assert (
        "this table is for 64x64x3 input and 14,714,688 parameters, so it does not check them "
        "(`tlkit inspect vgg16_tlkit` does)"
    ) in note


def _fake_table(input_shape, params, rows=()):
    return {
        "input_shape": list(input_shape),
        "rows": list(rows),
        "totals": {"params": params, "activations": 15_237_608, "mult_adds": 0},
    }


def test_seed_note_applies_only_to_the_configuration_its_figures_are_about():
    whole = seed_notes("vgg16", _fake_table((224, 224, 3), 138_357_544))
    assert len(whole) == 1 and "the figure this table reproduces" in whole[0]
    # the body alone at 224x224 (as a library caller may build it): another configuration
    (body,) = seed_notes("vgg16", _fake_table((224, 224, 3), 14_714_688))
    assert "this table is for 14,714,688 parameters, so it does not check them" in body
    assert seed_notes("resnet50", _fake_table((224, 224, 3), 1)) == []
    # GoogLeNet's figures are parameter counts, which a global-pooling head keeps at any size
    rows = [{"layer": "predictions", "params": 1_025_000}]
    (g,) = seed_notes("googlenet", _fake_table((64, 64, 3), 6_998_552, rows))
    assert "has 6,998,552 (7.0M; 5,973,552 without the 1000-way classifier" in g
    (g7,) = seed_notes("googlenet", _fake_table((224, 224, 3), 6_998_552 - 1_025_000 + 7 * 1025, rows))
    assert "does not check them" in g7  # 7 classes: not the network the notes count
