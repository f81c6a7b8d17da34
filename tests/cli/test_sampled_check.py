"""A sampled preflight (--check-sample) for data too large to decode twice: what it checks,
what it says, and a bad file outside the sample skipped by the input pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_RUN, make_shapes_folder, tlkit

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def test_check_data_sample_counts_and_says_so(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=12)
    out = tlkit("check-data", data, "--sample", "10", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n_files"] == 36 and report["n_checked"] == 10
    assert report["n_usable"] == 36  # the 26 unchecked files count as usable, and the report says so
    text = tlkit("check-data", data, "--sample", "10", cwd=tmp_path).stdout
    assert "checked a sample of 10 of 36 files" in text and "26 files are used unchecked" in text


def test_finetune_skips_an_unchecked_bad_file(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=12)
    (data / "dark" / "zz-not-an-image.png").write_text("not an image, and outside a sample of 1")
    out = tlkit(
        "finetune",
        "--data",
        data,
        *TINY_RUN,
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--check-sample",
        "1",
        "--name",
        "sampled",
        "--quiet",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "sampled"
    report = json.loads((run / "data_report.json").read_text())
    assert report["n_checked"] == 1 and report["n_files"] == 37
    assert report["n_skipped"] == 0  # not in the sample: the input pipeline met it and skipped it
    # The full check of the same data would have listed the file; the sampled run trained without it.
    full = json.loads(tlkit("check-data", data, "--json", cwd=tmp_path).stdout)
    assert [Path(b["path"]).name for b in full["bad_files"]] == ["zz-not-an-image.png"]
    assert (run / "metrics.json").exists() and (run / "best.keras").exists()
