"""Every figure the lecture notes state, computed by tlkit; docs/seed_numbers.md cannot drift.

The figures are computed once for the module (every model built once, about 10 s on a
CPU); each test checks tlkit's value against arithmetic written out here, and the verdict.
"""

import json

import keras
import pytest

from tlkit import seed_numbers
from tlkit.cli import main as cli
from tlkit.errors import ConfigError
from tlkit.inspection import conv_output_size, layer_table
from tlkit.models.teaching import MODULES, build_module, find_module
from tlkit.seed_figures_cases import VGG16_WALKTHROUGH
from tlkit.seed_numbers import (
    DEFAULT_OUT,
    Tables,
    compute_figures,
    render,
    verdict,
)

pytestmark = pytest.mark.usefixtures("frozen_gc")


@pytest.fixture(scope="module")
def computed():
    tables = Tables()
    figures = compute_figures(tables)
    keras.backend.clear_session()
    return tables, figures


@pytest.fixture(scope="module")
def fig(computed):
    return {f.key: f for f in computed[1]}


def _check(f, value, verdict_):
    assert f.value == pytest.approx(value) if not isinstance(value, str) else f.value == value, f.key
    assert f.verdict == verdict_, (f.key, f.shown, f.why)


# --- the generated file -------------------------------------------------------------


@pytest.mark.slow
def test_docs_seed_numbers_is_regenerated_unchanged(computed):
    assert DEFAULT_OUT.read_text(encoding="utf-8") == render(computed[1]), (
        "docs/seed_numbers.md is out of date: run `python -m tlkit.seed_numbers`"
    )


def test_every_figure_has_one_row_and_the_verdicts_are_the_known_ones(computed):
    figures = computed[1]
    keys = [f.key for f in figures]
    assert len(keys) == len(set(keys)) == 46
    by = {v: {f.key for f in figures if f.verdict == v} for v in ("reproduced", "rounding", "wrong")}
    assert by["rounding"] == {"alexnet_conv1_36k", "alexnet_params", "vgg16_params_140m"}
    assert by["wrong"] == {
        "googlenet_params_5m",
        "googlenet_vs_alexnet",
        "googlenet_vs_vgg16",
        "googlenet_params_4m",
        "inception_reduced_ops",
        "vgg16_activations",
        "vgg16_memory_93mb",
        "vgg16_memory_96mb",
        "allcnn_strided_c_params",
        "vgg16_images_in_5gb",
    }
    text = render(figures)
    assert "46 figures: 33 reproduced, 3 rounding, 10 wrong." in text
    assert text.count("\n| ") == 46 + 1  # header + one row per figure
    for f in figures:
        assert f.command and f.source and f.why, f.key


def test_check_mode_reports_a_stale_file_and_write_mode_fixes_it(computed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(seed_numbers, "compute_figures", lambda tables=None: computed[1])
    out = tmp_path / "seed_numbers.md"
    out.write_text("stale\n")
    assert seed_numbers.main(["--check", "--out", str(out)]) == 1
    assert out.read_text() == "stale\n"  # --check writes nothing
    assert "out of date" in capsys.readouterr().err
    assert seed_numbers.main(["--out", str(out)]) == 0
    assert out.read_text() == render(computed[1])
    assert seed_numbers.main(["--check", "--out", str(out)]) == 0


def test_verdict_rules():
    assert verdict(138e6, 138_357_544, 1e6) == "reproduced"
    assert verdict(140e6, 138_357_544, 1e6) == "rounding"  # 1.2% off
    assert verdict(36e3, 34_944, 1e3) == "rounding"  # 3.0% off
    assert verdict(24e6, 15_237_608, 1e6) == "wrong"  # 58% off
    assert verdict(12, 8.71) == "wrong"
    assert verdict(4.5, 4.5) == "reproduced"
    assert verdict("28x28x672", "28x28x672") == "reproduced"
    assert verdict("28x28x672", "28x28x480") == "wrong"


# --- the output-size formula ---------------------------------------------------------


def test_output_size_figures(fig):
    _check(fig["output_size_7_3_1_0"], 5, "reproduced")
    _check(fig["output_size_7_3_2_0"], 3, "reproduced")
    _check(fig["output_size_227_11_4_0"], (227 - 11) // 4 + 1, "reproduced")
    _check(fig["output_size_10_3_2_0"], (10 - 3) / 2 + 1, "reproduced")
    _check(fig["output_size_224_11_4_0"], "not an integer", "reproduced")
    assert fig["output_size_224_11_4_0"].shown.startswith(f"{(224 - 11) / 4 + 1:g}: refused")
    assert "refused" in fig["output_size_10_3_2_0"].shown
    with pytest.raises(ConfigError, match="4.5 is not an integer"):
        conv_output_size(10, 3, 2, 0)
    with pytest.raises(ConfigError, match="54.25 is not an integer"):
        conv_output_size(224, 11, 4, 0)


# --- AlexNet ---------------------------------------------------------------------------


def test_alexnet_conv1_figures(fig):
    _check(fig["alexnet_conv1_shape"], "55x55x96", "reproduced")
    _check(fig["alexnet_conv1_outputs"], 55 * 55 * 96, "reproduced")
    _check(fig["alexnet_conv1_weights"], 96 * 11 * 11 * 3, "reproduced")
    _check(fig["alexnet_conv1_params"], 96 * 11 * 11 * 3 + 96, "reproduced")
    _check(fig["alexnet_conv1_35k"], 34_944, "reproduced")
    _check(fig["alexnet_conv1_36k"], 34_944, "rounding")
    _check(fig["alexnet_conv1_unshared"], 290_400 * 364, "reproduced")
    assert 290_400 * 364 == 105_705_600


def test_alexnet_60m_is_the_two_gpu_form_rounded_down(fig):
    _check(fig["alexnet_params"], 60_965_224, "rounding")
    assert "62,378,344" in fig["alexnet_params"].shown


def test_alexnet_seed_notes(computed):
    tables = computed[0]
    (note,) = tables.get("alexnet")["notes"]
    assert "290,400 x 364 = 105,705,600" in note and "'36K'" in note and "rounds to 35K" in note
    assert "60,965,224" in note and "62,378,344" in note
    (note,) = tables.get("alexnet_grouped")["notes"]
    assert "60,965,224 (61.0M, so 60M rounds down)" in note


# --- small filters -------------------------------------------------------------------


def test_three_3x3_against_one_7x7(fig):
    _check(fig["three_3x3_receptive_field"], "7x7", "reproduced")
    _check(fig["three_3x3_params"], 27, "reproduced")
    _check(fig["one_7x7_params"], 49, "reproduced")
    assert "110,592 weights at C=64" in fig["three_3x3_params"].shown  # 27 * 64**2
    assert "200,704 weights at C=64" in fig["one_7x7_params"].shown  # 49 * 64**2


@pytest.mark.parametrize("c", [3, 8])
def test_stack_counts_hold_for_any_channel_count(c):
    for name, coeff, rf in (("three_3x3", 27, 7), ("one_7x7", 49, 7)):
        table = layer_table(build_module(MODULES[name], (16, 16, c)), name=name)
        assert sum(r["weights"] for r in table["rows"]) == coeff * c * c
        assert table["rows"][-1]["receptive_field"] == [rf, rf]
        (note,) = table["notes"]  # the C^2 figures hold at any size and depth
        assert f"{coeff}C^2" in note and f"{coeff} x {c}^2" in note


# --- GoogLeNet -------------------------------------------------------------------------


def test_googlenet_parameter_claims_are_wrong(fig):
    _check(fig["googlenet_params_5m"], 6_998_552, "wrong")
    _check(fig["googlenet_params_4m"], 6_998_552, "wrong")
    _check(fig["googlenet_vs_alexnet"], 60_965_224 / 6_998_552, "wrong")
    _check(fig["googlenet_vs_vgg16"], 138_357_544 / 6_998_552, "wrong")
    assert "5,973,552 without the 1000-way classifier" in fig["googlenet_params_5m"].why
    assert 6_998_552 - (1024 * 1000 + 1000) == 5_973_552


def test_googlenet_seed_note_names_the_true_count_and_its_source(computed):
    (note,) = computed[0].get("googlenet")["notes"]
    assert "'only 5 million parameters" in note and "'4M" in note
    assert "this builder of the paper's Table 1 has 6,998,552" in note
    assert "8.7x fewer than AlexNet's 60,965,224" in note and "19.8x fewer than VGG-16's 138,357,544" in note


# --- Inception modules ---------------------------------------------------------------


def test_naive_inception_module(fig):
    _check(fig["inception_naive_output"], "28x28x672", "reproduced")
    ops = 28 * 28 * (128 * 1 * 1 * 256 + 192 * 3 * 3 * 256 + 96 * 5 * 5 * 256)
    assert ops == 854_196_224
    _check(fig["inception_naive_ops"], ops, "reproduced")


def test_inception_module_with_bottlenecks(fig, computed):
    reduce_, proj = 28 * 28 * 64 * 256, 28 * 28 * 64 * 256
    conv1x1 = 28 * 28 * 128 * 256
    conv3x3, conv5x5 = 28 * 28 * 192 * 3 * 3 * 64, 28 * 28 * 96 * 5 * 5 * 64
    ops = 2 * reduce_ + proj + conv1x1 + conv3x3 + conv5x5
    assert ops == 271_351_808
    _check(fig["inception_reduced_ops"], ops, "wrong")
    assert ops + conv3x3 == 358_055_936  # the slide's 358M: the 3x3 counted twice
    table = computed[0].get("inception_reduced")
    assert table["rows"][-1]["output_shape"] == [28, 28, 480]
    (note,) = [n for n in table["notes"] if "358M" in n]
    assert "271,351,808" in note and "358,055,936" in note


# --- VGG -------------------------------------------------------------------------------


def test_vgg_configurations(fig):
    for config, value in zip("abcde", (132_863_336, 133_047_848, 133_638_952, 138_357_544, 143_667_240)):
        _check(fig[f"vgg_{config}_params"], value, "reproduced")


def test_vgg16_walkthrough_figures(fig):
    _check(fig["vgg16_rows"], len(VGG16_WALKTHROUGH), "reproduced")
    _check(fig["vgg16_params"], 138_357_544, "reproduced")
    _check(fig["vgg16_params_140m"], 138_357_544, "rounding")
    total = sum(a for _, a, _ in VGG16_WALKTHROUGH)
    _check(fig["vgg16_activations"], total, "wrong")
    assert total == 15_237_608
    _check(fig["vgg16_memory_93mb"], 4 * total, "wrong")
    _check(fig["vgg16_memory_96mb"], 4 * total, "wrong")
    assert "96 MB" in fig["vgg16_memory_93mb"].why  # 24M x 4 bytes is 96 MB, not 93


def test_fc_layers_as_convolutions(fig):
    _check(fig["fc_conv_pool5_224"], "7x7x512 /32", "reproduced")
    _check(fig["fc_conv_pool5_384"], "12x12x512", "reproduced")
    _check(fig["fc_conv_scores_384"], "6x6x1000", "reproduced")
    assert "36 locations" in fig["fc_conv_scores_384"].shown


# --- the teaching modules in `tlkit inspect` ---------------------------------------------


def test_inspect_knows_the_teaching_modules_without_the_registry(capsys):
    import tlkit

    assert find_module("Inception-Naive") is MODULES["inception_naive"]
    assert not set(MODULES) & {s.name for s in tlkit.list_models()}
    assert cli.main(["inspect", "inception-naive", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"] == "inception_naive"
    assert table["totals"]["mult_adds"] == 854_196_224
    assert any("'854M ops', both reproduced" in n for n in table["notes"])


def test_inspect_module_at_another_size_does_not_claim_the_figures(capsys):
    assert cli.main(["inspect", "inception_naive", "--input-size", "14", "14", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["totals"]["mult_adds"] == 854_196_224 // 4
    assert not any("reproduced" in n for n in table["notes"])
    assert any("about 28x28x256 input; this table is for 14x14x256 input" in n for n in table["notes"])


def test_unknown_name_lists_the_teaching_modules(capsys):
    assert cli.main(["inspect", "inception_naiv"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown model 'inception_naiv'" in err and "inception_naive, inception_reduced" in err


# --- depth and the All-CNN family -------------------------------------------------------------


def test_depth_counts_weighted_layers_on_the_longest_path(fig, computed):
    for key, depth in [
        ("alexnet_depth", 8),
        ("vgg16_depth", 16),
        ("vgg19_depth", 19),
        ("googlenet_depth", 22),
        ("resnet152_depth", 1 + 3 * (3 + 8 + 36 + 3) + 1),
    ]:
        _check(fig[key], depth, "reproduced")
    # GoogLeNet's paper: 22 layers with parameters, 27 counting pooling (4 max-pools and the average pool)
    assert computed[0].get("googlenet")["totals"]["depth_with_pooling"] == 27
    assert fig["googlenet_depth"].shown == "22 weighted layers (27 with pooling)"
    assert computed[0].get("vgg16")["totals"]["depth_with_pooling"] == 16 + 5


def test_depth_takes_the_longest_branch_and_skips_batchnorm():
    L = keras.layers
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1)(x)  # one weighted layer
    b = L.Conv2D(4, 3, padding="same")(L.Conv2D(4, 1)(x))  # two
    c = L.Conv2D(4, 1)(L.MaxPooling2D(3, 1, padding="same")(x))  # one, two with the pool
    y = L.ReLU()(L.BatchNormalization()(L.Concatenate()([a, b, c])))
    y = L.Dense(2)(L.GlobalAveragePooling2D()(y))
    t = layer_table(keras.Model(x, y))["totals"]
    assert (t["depth"], t["depth_with_pooling"]) == (3, 4)


def test_strided_cnn_c_count_is_flagged_against_the_builder(fig):
    c3 = 3 * 3 * 96 * 96 + 96 + 3 * 3 * 192 * 192 + 192  # the two 3x3 convs All-CNN-C adds
    model_c = (3 * 9 * 96 + 96) + (96 * 9 * 96 + 96) + (96 * 9 * 192 + 192) + 2 * (192 * 9 * 192 + 192)
    model_c += (192 * 192 + 192) + (192 * 10 + 10)
    assert model_c == 954_730 and model_c + c3 == 1_369_738
    _check(fig["allcnn_strided_c_params"], model_c, "wrong")
    assert "36% high" in fig["allcnn_strided_c_params"].why and f"{c3:,}" in fig["allcnn_strided_c_params"].why
    _check(fig["allcnn_convpool_c_params"], 1_369_738, "reproduced")
    _check(fig["allcnn_c_params"], 1_369_738, "reproduced")


def test_vgg16_images_in_5gb(fig):
    _check(fig["vgg16_images_in_5gb"], 5 * 10**9 // (4 * 15_237_608), "wrong")
    assert fig["vgg16_images_in_5gb"].value == 82
    assert 5 * 10**9 // (24 * 10**6 * 4) == 52  # the notes' "about 50"
    assert fig["vgg16_images_in_5gb"].shown.endswith("training with Adam: 22")
