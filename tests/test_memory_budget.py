"""The training memory budget (tlkit.memory_budget): the notes' arithmetic, and one measured peak."""

import pytest

from tlkit.errors import ConfigError
from tlkit.memory_budget import (
    OPTIMIZER_SLOTS,
    MemoryBudget,
    budget_from_table,
    format_budget,
    parse_size,
)
from tlkit.seed_figures_cases import VGG16_WALKTHROUGH

VGG16_PARAMS = 138_357_544
VGG16_VALUES = sum(a for _, a, _ in VGG16_WALKTHROUGH)  # every row of the notes' table, input included
VGG16_INPUT = 224 * 224 * 3


def _vgg16_table():
    """The notes' VGG16 walk-through as a `tlkit inspect` table (tests/test_inspection.py checks
    that `tlkit inspect vgg16` equals it row by row)."""
    rows = [
        {"type": "InputLayer" if i == 0 else "Layer", "activations": a, "view": False}
        for i, (_, a, _) in enumerate(VGG16_WALKTHROUGH)
    ]
    return {
        "model": "vgg16",
        "input_shape": [224, 224, 3],
        "rows": rows,
        "totals": {"params": VGG16_PARAMS, "params_keras": VGG16_PARAMS, "activations": VGG16_VALUES},
    }


def test_vgg16_activations_per_image_are_the_notes_rows_without_the_input():
    # the notes' rows: 3.2M twice at 224x224x64, 1.6M twice at 112x112x128, ... 4096, 4096, 1000
    assert VGG16_WALKTHROUGH[1][1] == 224 * 224 * 64 == 3_211_264
    assert VGG16_VALUES == 15_237_608  # not the notes' "24M" (docs/seed_numbers.md, vgg16_activations)
    b = budget_from_table(_vgg16_table(), batch=1, optimizer="sgd")
    assert b.input_per_image == VGG16_INPUT == 150_528
    assert b.activations_per_image == VGG16_VALUES - VGG16_INPUT == 15_087_080
    # forward only, per image, with the input: 4 bytes x 15,237,608 = 61.0 MB (the notes: "~= 93MB")
    assert 4 * (b.activations_per_image + b.input_per_image) == 60_950_432
    # with the notes' "~*2 for bwd" on the activations
    assert b.per_image_bytes() == 4 * (2 * 15_087_080 + 150_528) == 121_298_752


@pytest.mark.parametrize(("optimizer", "factor"), [("sgd", 2), ("momentum", 3), ("adam", 4)])
def test_parameter_memory_is_weights_times_3_with_momentum_and_4_with_adam(optimizer, factor):
    b = budget_from_table(_vgg16_table(), batch=1, optimizer=optimizer)
    assert b.slots == OPTIMIZER_SLOTS[optimizer] == factor - 2
    assert b.parameter_factor == factor
    assert b.fixed_bytes == factor * 4 * VGG16_PARAMS
    parts = b.parameter_bytes
    assert parts["weights"] == parts["gradients"] == 4 * VGG16_PARAMS == 553_430_176
    assert parts["optimizer_state"] == (factor - 2) * 553_430_176


def test_batchnorm_moving_statistics_are_weights_without_gradients():
    b = MemoryBudget(
        "m", (8, 8, 3), 2, "adam", weights=1_100, trainable=1_000, activations_per_image=10, input_per_image=3
    )
    assert b.parameter_bytes == {"weights": 4_400, "gradients": 4_000, "optimizer_state": 8_000}
    assert b.parts["activations"] == b.parts["activation_gradients"] == 4 * 10 * 2
    assert b.parts["input_batch"] == 4 * 3 * 2
    assert b.total == 4_400 + 4_000 + 8_000 + 80 + 80 + 24


def test_total_and_largest_batch_arithmetic():
    b = budget_from_table(_vgg16_table(), batch=32, optimizer="adam")
    fixed, per_image = 4 * 4 * VGG16_PARAMS, 4 * (2 * 15_087_080 + 150_528)
    assert b.total == fixed + 32 * per_image
    budget = parse_size("5GB")
    assert budget == 5 * 10**9
    assert b.largest_batch(budget) == (5 * 10**9 - fixed) // per_image == 22
    assert b.total > budget and budget_from_table(_vgg16_table(), 22, "adam").total <= budget
    assert budget_from_table(_vgg16_table(), 23, "adam").total > budget
    # the notes' "5 Gigs of memory, we can store only about 50 images" is 5e9 / (24M x 4 bytes), forward only
    assert 5 * 10**9 // (24 * 10**6 * 4) == 52
    # plain SGD, forward and backward: the parameters take 2 x 553 MB
    assert (
        budget_from_table(_vgg16_table(), 1, "sgd").largest_batch(budget) == (5 * 10**9 - 2 * 553_430_176) // per_image
    )
    # mixed_float16: activations and their gradients in 2 bytes, the input and parameters in 4
    assert b.largest_batch(budget, 2) == (5 * 10**9 - fixed) // (2 * 2 * 15_087_080 + 4 * 150_528) == 45
    assert b.largest_batch(parse_size("2GB")) == 0  # Adam's 2.2 GB of parameters alone do not fit
    text = format_budget(b, parse_size("2GB"))
    assert "largest batch that fits 2.0 GB: none; weights, gradients and optimizer state alone take 2.2 GB" in text


def test_parse_size_units_and_refusals():
    assert parse_size("8GB") == 8_000_000_000
    assert parse_size("16GiB") == 16 * 2**30
    assert parse_size("512mb") == 512 * 10**6
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("4096") == 4096
    for bad in ("", "GB", "8XB", "-1GB", "0GB"):
        with pytest.raises(ConfigError, match="expected a memory size such as 8GB"):
            parse_size(bad)


def test_unknown_optimizer_and_batch_are_refused():
    with pytest.raises(ConfigError, match="--optimizer must be one of sgd, momentum, adam"):
        budget_from_table(_vgg16_table(), 1, "rmsprop")
    with pytest.raises(ConfigError, match="--batch must be >= 1"):
        budget_from_table(_vgg16_table(), 0, "adam")


@pytest.mark.slow
def test_estimate_is_within_a_factor_1_5_of_tensorflows_measured_peak():
    """cifar_example, batch 64, Adam: TensorFlow's CPU BFC allocator's peak of one training step with
    oneDNN's kernels (TensorFlow's default on x86; this suite's conftest turns them off, the child turns
    them back on). benchmarks/bench_memory.py measures more models (benchmarks/results/memory.json)."""
    from tlkit.memory_measure import measure_peak

    r = measure_peak("cifar_example", 64, "adam", onednn=True, timeout=300)
    assert r["onednn"] is True
    e = r["estimate"]
    assert e["weights"] == e["trainable"] == 31_066 and e["activations_per_image"] == 15_370
    # between the steps TensorFlow holds the weights, Adam's two slots and the batch: at least the estimate's
    held = e["bytes"]["weights"] + e["bytes"]["optimizer_state"] + e["bytes"]["input_batch"]
    assert held <= r["resident_bytes"] < r["peak_bytes"]
    assert 1 / 1.5 <= r["ratio"] <= 1.5, r


def test_inspect_memory_json_of_a_small_model_with_momentum(capsys):
    import json

    import keras

    from tlkit.cli import main as cli

    assert (
        cli.main(
            ["inspect", "cifar_example", "--memory", "--batch", "64", "--optimizer", "momentum"]
            + ["--budget", "1MB", "--json"]
        )
        == 0
    )
    keras.backend.clear_session()
    d = json.loads(capsys.readouterr().out)
    assert (d["weights"], d["trainable"], d["slots"], d["activations_per_image"]) == (31_066, 31_066, 1, 15_370)
    assert d["input_per_image"] == 32 * 32 * 3
    assert d["bytes"] == {
        "weights": 4 * 31_066,
        "gradients": 4 * 31_066,
        "optimizer_state": 4 * 31_066,
        "activations": 4 * 64 * 15_370,
        "activation_gradients": 4 * 64 * 15_370,
        "input_batch": 4 * 64 * 3_072,
    }
    assert d["total_bytes"] == sum(d["bytes"].values()) == 9_028_664
    assert d["parameter_factor"] == 3
    # (1e6 - 3 x 4 x 31,066) // (4 x (2 x 15,370 + 3,072)) = 627,208 // 135,248
    assert d["largest_batch"] == 4 and d["budget_bytes"] == 10**6
    assert d["largest_batch_mixed_float16"] == 627_208 // (2 * 2 * 15_370 + 4 * 3_072) == 8


def test_inspect_memory_defaults_to_batch_32_and_adam_and_inspect_prints_the_depth(capsys):
    import json

    import keras

    from tlkit.cli import main as cli

    assert cli.main(["inspect", "cifar_example", "--memory", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["batch"], d["optimizer"], d["slots"], d["parameter_factor"]) == (32, "adam", 2, 4)
    assert "budget_bytes" not in d
    assert cli.main(["inspect", "cifar_example"]) == 0
    keras.backend.clear_session()
    # conv1 and fc; the max-pool between them counts with pooling
    assert "depth:             2 weighted layers (conv and fc) on the longest path, 3 counting pooling layers" in (
        capsys.readouterr().out
    )
