"""`tlkit inspect NAME --memory` through the installed command: the training memory budget."""

import json

import pytest
from conftest import assert_one_line_error, tlkit

from tlkit.seed_figures_cases import VGG16_WALKTHROUGH

pytestmark = pytest.mark.slow


def test_vgg16_budget_json_counts_the_notes_rows_and_fits_22_images_in_5gb(tmp_path):
    r = tlkit(
        "inspect",
        "vgg16",
        "--memory",
        "--batch",
        "32",
        "--optimizer",
        "adam",
        "--budget",
        "5GB",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    params = 138_357_544
    per_image = sum(a for _, a, _ in VGG16_WALKTHROUGH) - 224 * 224 * 3  # the built model's layers = the notes' rows
    assert (d["weights"], d["trainable"], d["activations_per_image"]) == (params, params, per_image)
    assert d["bytes"] == {
        "weights": 4 * params,
        "gradients": 4 * params,
        "optimizer_state": 8 * params,
        "activations": 4 * 32 * per_image,
        "activation_gradients": 4 * 32 * per_image,
        "input_batch": 4 * 32 * 224 * 224 * 3,
    }
    assert d["total_bytes"] == sum(d["bytes"].values())
    assert d["parameter_factor"] == 4
    assert d["largest_batch"] == (5 * 10**9 - 16 * params) // (8 * per_image + 4 * 224 * 224 * 3) == 22
    assert d["largest_batch_mixed_float16"] == 45


def test_text_budget_of_a_small_model_with_momentum(tmp_path):
    r = tlkit(
        "inspect",
        "cifar_example",
        "--memory",
        "--batch",
        "64",
        "--optimizer",
        "momentum",
        "--budget",
        "1MB",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = " ".join(r.stdout.split())  # the columns' padding aside
    assert "training memory of cifar_example at 32x32x3, batch 64, momentum, float32" in out
    assert "optimizer state 31,066 values 124.3 KB momentum: 1 slot: velocity" in out
    assert "activations 983,680 values 3.9 MB 15,370 per image (every layer's output) x 64" in out
    assert "parameters x 3 with gradients and momentum state" in out
    # (1e6 - 3 x 4 x 31,066) // (4 x (2 x 15,370 + 3,072)) = 627,208 // 135,248 = 4
    assert "largest batch that fits 1.0 MB: 4" in out
    assert "total 2,257,166 values 9.0 MB" in out
    assert (
        "mixed_float16 (activations in 2 bytes, variables and slots in float32): total 5.1 MB, largest batch 8" in out
    )


def test_memory_flags_without_memory_are_refused_in_one_line(tmp_path):
    line = assert_one_line_error(tlkit("inspect", "cifar_example", "--batch", "8", "--budget", "1GB", cwd=tmp_path))
    assert "--batch, --budget only apply with --memory: add --memory or drop them" in line
    line = assert_one_line_error(tlkit("inspect", "cifar_example", "--memory", "--budget", "8XB", cwd=tmp_path))
    assert "expected a memory size such as 8GB" in line
