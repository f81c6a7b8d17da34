"""tlkit finetune --cache / --cache-budget from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_RUN, make_shapes_folder, tlkit

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def test_finetune_with_a_disk_cache_and_an_over_budget_cache(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=8)
    out = tlkit(
        "finetune",
        "--data",
        data,
        *TINY_RUN,
        "--epochs",
        "2",
        "--finetune-epochs",
        "0",
        "--cache",
        tmp_path / "imgcache",
        "--name",
        "cached",
        "--quiet",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "without the cache" not in out.stderr
    assert len(list((tmp_path / "imgcache").glob("images-32x32-*.index"))) == 2  # train and val, at the input size
    history = json.loads((tmp_path / "runs" / "cached" / "metrics.json").read_text())
    assert history  # the run finished and wrote its metrics
    small = tlkit(
        "finetune",
        "--data",
        data,
        *TINY_RUN,
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--cache",
        "mem",
        "--cache-budget",
        "1KiB",
        "--name",
        "uncached",
        "--quiet",
        cwd=tmp_path,
    )
    assert small.returncode == 0, small.stderr[-3000:]
    lines = [ln for ln in small.stderr.splitlines() if "--cache-budget" in ln]
    assert len(lines) == 2 and all("running without the cache" in ln for ln in lines)  # one line per split
    bad = tlkit("finetune", "--data", data, *TINY_RUN, "--cache", "mem", "--cache-budget", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "--cache-budget: 'lots' is not a size" in bad.stderr
