"""``tlkit extract`` streams one pipeline over the whole job: killed outright (SIGKILL, no cleanup)
between parts and resumed, it writes exactly what an uninterrupted run writes."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import make_shapes_folder, start_tlkit, stop, tlkit, wait_for

# Parts of 4 images in batches of 3: each part ends in a short batch, and decoding runs ahead across parts.
STREAM = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--layer",
    "penultimate",
    "--chunk-rows",
    "4",
    "--batch-size",
    "3",
    "--seed",
    "0",
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def test_extraction_killed_and_resumed_equals_an_uninterrupted_one(tmp_path: Path):
    from tlkit.features.store import load_features

    data = make_shapes_folder(tmp_path / "shapes", n=20)  # 60 images: 15 parts
    full = tmp_path / "full.parquet"
    res = tlkit("extract", *STREAM, "--data", data, "--out", full, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    out, parts = tmp_path / "part.parquet", tmp_path / "part.parquet.parts"
    proc = start_tlkit("extract", *STREAM, "--data", data, "--out", out, cwd=tmp_path, log=tmp_path / "killed.log")
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 2, timeout=180, proc=proc, every=0.02)
    assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
    done = len(list(parts.glob("part-*.parquet")))
    assert 2 <= done < 15 and not out.exists()
    res = tlkit("extract", *STREAM, "--data", data, "--out", out, "--resume", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"wrote 60 rows ({60 - 4 * done} new" in res.stdout, res.stdout
    a, rows_a, _ = load_features(full)
    b, rows_b, _ = load_features(out)
    assert list(rows_a["path"]) == list(rows_b["path"]) and len(rows_b) == 60
    np.testing.assert_array_equal(b["penultimate"], a["penultimate"])  # bit for bit


def test_a_replacing_run_killed_midway_leaves_the_old_file_byte_identical(tmp_path: Path):
    """--force (and --resume) replace the output only once the new one is complete: killed before
    that, the old file is exactly as it was (it used to be deleted at the start)."""
    data = make_shapes_folder(tmp_path / "shapes", n=20)  # 60 images: 15 parts
    out, parts = tmp_path / "feats.parquet", tmp_path / "feats.parquet.parts"
    res = tlkit("extract", *STREAM, "--data", data, "--out", out, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    old = out.read_bytes()
    other = [a if a != "0" else "1" for a in STREAM]  # --seed 1: other weights, so other features
    proc = start_tlkit("extract", *other, "--data", data, "--out", out, "--force", cwd=tmp_path, log=tmp_path / "k.log")
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 2, timeout=180, proc=proc, every=0.02)
    assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
    assert out.read_bytes() == old
    # Resuming the replacement continues it (not the old file), and only then is the file replaced.
    res = tlkit("extract", *other, "--data", data, "--out", out, "--resume", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "wrote 60 rows" in res.stdout and out.read_bytes() != old and not parts.exists()
