"""`tlkit inspect NAME --memory` through the installed command: the training memory budget."""

import pytest
from conftest import assert_one_line_error, tlkit

from tlkit.seed_figures_cases import VGG16_WALKTHROUGH

pytestmark = pytest.mark.slow


def test_vgg16_budget_counts_the_notes_rows_and_fits_22_images_in_5gb(tmp_path):
    r = tlkit("inspect", "vgg16", "--memory", "--batch", "32", "--optimizer", "adam", "--budget", "5GB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = " ".join(r.stdout.split())  # the columns' padding aside
    per_image = sum(a for _, a, _ in VGG16_WALKTHROUGH) - 224 * 224 * 3  # the built model's layers = the notes' rows
    assert per_image == 15_087_080
    assert "training memory of vgg16 at 224x224x3, batch 32, adam, float32 (4 bytes a value):" in out
    assert "weights 138,357,544 values 553.4 MB" in out
    assert "gradients 138,357,544 values 553.4 MB one per trainable parameter" in out
    assert "optimizer state 276,715,088 values 1.1 GB adam: 2 slots: first and second moments" in out
    assert f"activations {32 * per_image:,} values 1.9 GB {per_image:,} per image (every layer's output) x 32" in out
    assert f"activation gradients {32 * per_image:,} values 1.9 GB as many again" in out
    assert f"input batch {32 * 150_528:,} values 19.3 MB 32 x 224x224x3" in out
    total = 4 * 138_357_544 + 32 * (2 * per_image + 150_528)
    assert f"total {total:,} values 6.1 GB" in out
    assert "parameters x 4 with gradients and adam state; 121.3 MB per image of the batch" in out
    # (5e9 - 16 x 138,357,544) // (4 x (2 x 15,087,080 + 150,528)) = 22
    assert "largest batch that fits 5.0 GB: 22" in out
    assert "total 4.2 GB, largest batch 45" in out  # mixed_float16


def test_memory_flags_without_memory_are_refused_in_one_line(tmp_path):
    line = assert_one_line_error(tlkit("inspect", "cifar_example", "--batch", "8", "--budget", "1GB", cwd=tmp_path))
    assert "--batch, --budget only apply with --memory: add --memory or drop them" in line
    line = assert_one_line_error(tlkit("inspect", "cifar_example", "--memory", "--budget", "8XB", cwd=tmp_path))
    assert "expected a memory size such as 8GB" in line
