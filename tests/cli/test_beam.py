"""Feature extraction on Apache Beam (two worker processes) equals ``tlkit extract`` on one.

Skipped, with the reason, only when the optional extra is not installed; ``.ci/run`` installs
it (the README's test command asks for ``.[test,beam]``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_shapes_folder, tlkit

pytest.importorskip("apache_beam", reason='the beam extra is not installed: pip install "tlkit[beam]"')

FLAGS = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--seed",
    "3",
    "--input-size",
    "32",
    "32",
    "--layer",
    "penultimate",
    "--layer",
    "conv1",  # a second layer (pool1 is what penultimate names: one layer twice is refused)
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def _skipped(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return sorted(csv.reader(f))


def test_beam_extraction_equals_the_local_one(tmp_path: Path):
    from tlkit.features.store import load_features

    data = make_shapes_folder(tmp_path / "shapes", n=8)
    (data / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (data / "stripes" / "notes.jpg").write_text("not an image")
    beam = tlkit(
        "extract",
        *FLAGS,
        "--data",
        data,
        "--out",
        "beam/f.parquet",
        "--runner",
        "beam",
        "--beam-args",
        "--direct_num_workers=2 --direct_running_mode=multi_processing",
        cwd=tmp_path,
        timeout=400,
    )
    assert beam.returncode == 0, beam.stderr[-3000:]
    assert beam.stderr == ""  # Beam's and TensorFlow's start-up logging stays hidden
    local = tlkit("extract", *FLAGS, "--data", data, "--out", "local/f.parquet", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    shards = sorted((tmp_path / "beam").glob("f-*-of-*.parquet"))
    assert len(shards) >= 1
    fb, rb, mb = load_features(tmp_path / "beam" / "f.parquet")  # the shards, read as one table
    fl, rl, ml = load_features(tmp_path / "local" / "f.parquet")
    assert mb == ml  # same model, layers, seeds, sizes, classes: one feature space
    assert len(rb) == len(rl) == 24
    ib, il = rb.sort_values("path").index, rl.sort_values("path").index
    for col in ("path", "label", "label_id", "split"):
        assert list(rb.loc[ib, col]) == list(rl.loc[il, col])
    for layer in ("penultimate", "conv1"):
        np.testing.assert_allclose(fb[layer][ib], fl[layer][il], rtol=0, atol=1e-5)
    skipped = _skipped(tmp_path / "beam" / "f.parquet.skipped.csv")
    assert skipped == _skipped(tmp_path / "local" / "f.parquet.skipped.csv")
    assert [Path(r[0]).name for r in skipped if r[0] != "path"] == ["broken.png", "notes.jpg"]
    # A second run does not silently mix shards of two runs.
    again = tlkit("extract", *FLAGS, "--data", data, "--out", "beam/f.parquet", "--runner", "beam", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
