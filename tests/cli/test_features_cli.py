"""``tlkit extract`` / ``tlkit probe`` on random weights, and the message for a head layer.

With ``--weights none`` the network is drawn at random. Before the seed was recorded, a
resumed extraction built a new random network, so rows before and after the interruption
came from unrelated networks, and ``probe --export`` put the probe on yet another one.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_line_error,
    make_shapes_folder,
    start_tlkit,
    stop,
    tlkit,
    wait_for,
)

# A tiny random network; one image per chunk, so an interruption lands between many chunks.
RANDOM_EXTRACT = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--layer",
    "penultimate",
    "--chunk-rows",
    "1",
    "--batch-size",
    "1",
    "--seed",
    "0",
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


@pytest.fixture()
def shapes60(tmp_path: Path) -> Path:
    return make_shapes_folder(tmp_path / "shapes", n=20)  # 60 PNGs of 32x32


def _features(path: Path):
    from tlkit.features.store import load_features

    feats, rows, meta = load_features(path)
    return feats["penultimate"], rows, meta


def test_random_weights_resume_after_sigint_and_export_the_same_network(tmp_path, shapes60):
    full = tmp_path / "full.parquet"
    res = tlkit("extract", *RANDOM_EXTRACT, "--data", shapes60, "--out", full, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]

    # Interrupt a second extraction (Ctrl-C) once some chunks are on disk, then resume it.
    out = tmp_path / "part.parquet"
    parts = tmp_path / "part.parquet.parts"
    proc = start_tlkit(
        "extract", *RANDOM_EXTRACT, "--data", shapes60, "--out", out, cwd=tmp_path, log=tmp_path / "interrupted.log"
    )
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 3, timeout=180, proc=proc, every=0.05)
    assert stop(proc, signal.SIGINT) == 130, (tmp_path / "interrupted.log").read_text()[-2000:]
    done = len(list(parts.glob("part-*.parquet")))
    assert 3 <= done < 60 and not out.exists()
    res = tlkit("extract", *RANDOM_EXTRACT, "--data", shapes60, "--out", out, "--resume", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"wrote 60 rows ({60 - done} new" in res.stdout, res.stdout

    a, rows_a, meta_a = _features(full)
    b, rows_b, meta_b = _features(out)
    assert list(rows_a["path"]) == list(rows_b["path"]) and list(rows_a["split"]) == list(rows_b["split"])
    # Rows before and after the interruption come from the network of the uninterrupted run.
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert meta_b["weights"] is None and meta_b["weights_seed"] == 0
    assert meta_b["weights_sha256"] == meta_a["weights_sha256"]

    # A probe on these features, exported as a Dense head on the rebuilt random network,
    # predicts what the probe predicts, image by image.
    res = tlkit(
        "probe", out, "--out", tmp_path / "probe", "--export", tmp_path / "run", "--cv", "3", cwd=tmp_path, timeout=180
    )
    assert res.returncode == 0, res.stderr[-2000:]
    import joblib

    from tlkit.data.pipeline import images_dataset
    from tlkit.features.probe import probe_scores
    from tlkit.finetune.evaluation_runs import load_run

    model, labels, _ = load_run(tmp_path / "run")
    assert labels == ["bright", "dark", "stripes"]
    saved = joblib.load(tmp_path / "probe" / "probe.joblib")
    want = probe_scores(saved["model"], b)
    images = np.concatenate(
        [np.asarray(x) for x in images_dataset(rows_b["path"].tolist(), image_size=(32, 32), batch_size=20)]
    )
    got = model.predict(images, verbose=0)
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_head_layer_at_another_input_size_names_the_head(tmp_path, shapes):
    res = tlkit(
        "extract",
        "--base",
        "vgg16_tlkit",
        "--weights",
        "none",
        "--input-size",
        "64",
        "64",
        "--layer",
        "fc7",
        "--data",
        shapes,
        "--out",
        tmp_path / "f.parquet",
        cwd=tmp_path,
        timeout=120,
    )
    line = assert_one_line_error(res)
    assert "fc7" in line and "fully connected head" in line and "224x224" in line, line
    assert "--input-size 224 224" in line and "pool5" in line, line  # the two ways out
    assert "no layer" not in line
    assert not (tmp_path / "f.parquet").exists() and not (tmp_path / "f.parquet.parts").exists()
