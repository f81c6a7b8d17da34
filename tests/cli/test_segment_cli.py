"""``tlkit segment`` through the installed command: sample data, finetune, resume, evaluate, predict, export.

One tiny seeded run (EfficientNet-Lite0 with random weights at 64x64, FCN-8s, 1 decoder epoch and 1
epoch with the top block unfrozen, a few generated pairs) is shared by the tests; a second run of the
same settings is stopped by SIGINT after epoch 0 and resumed: its history must equal the first's.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TLKIT, assert_one_line_error, cli_env, run_history, run_state, start_tlkit, stop, tlkit, wait_for
from PIL import Image

pytestmark = pytest.mark.slow

ARGS = (
    "segment",
    "finetune",
    "--base",
    "efficientnet_lite0",
    "--weights",
    "none",
    "--head",
    "fcn8s",
    "--input-size",
    "64",
    "64",
    "--batch-size",
    "4",
    "--epochs",
    "1",
    "--finetune-epochs",
    "1",
    "--unfreeze",
    "1",
    "--lr",
    "1e-2",
    "--seed",
    "0",
    "--quiet",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sample data, an uninterrupted run, and the same run stopped after epoch 0 and resumed."""
    root = tmp_path_factory.mktemp("segment")
    made = tlkit(
        "segment", "sample-data", "data", "--train", "4", "--val", "2", "--test", "1", "--size", "64", cwd=root
    )
    assert made.returncode == 0, made.stderr[-2000:]
    args = (*ARGS, "--data", "data")
    # Both runs at once (CPU ops are deterministic: running beside another process changes no bit).
    full = start_tlkit(*args, "--name", "full", cwd=root, log=root / "full.log")
    stopped = root / "runs" / "stopped"
    proc = start_tlkit(*args, "--name", "stopped", cwd=root, log=root / "stopped.log")
    try:
        wait_for(lambda: run_state(stopped).get("next_epoch", 0) >= 1, timeout=300, proc=proc)
        rc = stop(proc, signal.SIGINT)
        resumed = tlkit(*args, "--name", "stopped", "--resume", cwd=root, timeout=300)
        assert full.wait(timeout=300) == 0, (root / "full.log").read_text()[-3000:]
    finally:
        if full.poll() is None:
            stop(full, signal.SIGKILL, timeout=5)
    return {"root": root, "full": root / "runs" / "full", "stopped": stopped, "rc": rc, "resumed": resumed}


def _at_once(root: Path, commands: dict[str, tuple], timeout: float = 300) -> dict[str, subprocess.CompletedProcess]:
    """Run several ``tlkit`` commands side by side (each its own process); their results by name."""
    procs = {}
    for name, args in commands.items():
        out, err = open(root / f"{name}.out", "w+"), open(root / f"{name}.err", "w+")  # noqa: SIM115
        cmd = [TLKIT, *map(str, args)]
        procs[name] = (subprocess.Popen(cmd, cwd=root, env=cli_env(), stdout=out, stderr=err), out, err)
    results = {}
    for name, (proc, out, err) in procs.items():
        rc = proc.wait(timeout=timeout)
        out.seek(0), err.seek(0)
        results[name] = subprocess.CompletedProcess(proc.args, rc, out.read(), err.read())
        out.close(), err.close()
    return results


@pytest.fixture(scope="module")
def used(runs: dict) -> dict:
    """evaluate, predict (the model's size and another) and export of the finished run, side by side."""
    root, run = runs["root"], runs["full"]
    photo = sorted((root / "data" / "test" / "images").iterdir())[0]
    wide = root / "wide.png"
    Image.open(photo).convert("RGB").resize((96, 48)).save(wide)  # another size than the model's 64x64
    done = _at_once(
        root,
        {
            "evaluate": ("segment", "evaluate", run, "--json"),
            "predict": ("segment", "predict", run, photo, wide, "--out", "masks"),
            "export": ("segment", "export", run, "served", "--quiet"),
        },
    )
    return {**done, "photo": photo, "wide": wide}


def test_finetune_writes_the_run_with_val_mean_iou_in_its_history(runs):
    run = runs["full"]
    for name in ("config.json", "labels.json", "state.json", "history.csv", "best.keras", "last.keras"):
        assert (run / name).is_file(), name
    for name in ("train.log", "metrics.json", "confusion.png", "examples.png", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [r["stage"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["val_mean_iou"]) <= 1.0 for r in rows)
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "segmentation" and config["head"] == "fcn8s"
    assert json.loads((run / "labels.json").read_text())[0] == "background"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["checkpoint"] == "best.keras"
    assert 0.0 <= metrics["mean_iou"] <= 1.0 and "test" in metrics
    assert json.loads((run / "state.json").read_text())["done"] is True


def test_a_run_stopped_after_epoch_0_and_resumed_equals_the_uninterrupted_one(runs):
    assert runs["rc"] == 130
    assert runs["resumed"].returncode == 0, runs["resumed"].stderr[-3000:]
    assert run_history(runs["stopped"]) == run_history(runs["full"])
    a = json.loads((runs["full"] / "metrics.json").read_text())
    b = json.loads((runs["stopped"] / "metrics.json").read_text())
    assert a["confusion"] == b["confusion"]


def test_evaluate_prints_the_mean_iou_of_metrics_json(runs, used):  # its text form: tests/test_segment_train.py
    metrics = json.loads((runs["full"] / "metrics.json").read_text())
    shown = used["evaluate"]
    assert shown.returncode == 0, shown.stderr[-2000:]
    result = json.loads(shown.stdout)
    assert result["mean_iou"] == metrics["mean_iou"]
    assert result["confusion"] == metrics["confusion"]
    assert result["boundary"]["width"] == 3 and set(result["per_class"]) == set(metrics["per_class"])


def test_predict_writes_masks_of_the_photo_size_and_export_matches_the_keras_model(runs, used):
    root, photo, wide = runs["root"], used["photo"], used["wide"]
    assert used["predict"].returncode == 0, used["predict"].stderr[-2000:]
    for src in (photo, wide):
        with Image.open(root / "masks" / f"{src.stem}_mask.png") as m:
            assert m.mode == "P"
            assert m.size == Image.open(src).size
        assert (root / "masks" / f"{src.stem}_overlay.png").is_file()

    exported = used["export"]
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert exported.stdout.strip().endswith("served/1")
    import tensorflow as tf

    from tlkit._keras_objects import register
    from tlkit.data import resize as rs
    from tlkit.data.images import load_rgb

    register()
    import keras

    model = keras.saving.load_model(runs["full"] / "best.keras")
    served = tf.saved_model.load(str(root / "served" / "1")).signatures["serving_default"]
    got = served(image_bytes=tf.constant([wide.read_bytes()]))
    image = load_rgb(wide)
    logits = model.predict_on_batch(np.asarray(rs.plain(image, (64, 64)))[None])
    want = tf.argmax(tf.image.resize(logits, image.shape[:2], method="bilinear"), axis=-1).numpy()
    assert got["mask"].dtype == tf.uint8 and got["mask"].shape == (1, 48, 96)
    assert got["scores"].shape == (1, 48, 96, len(json.loads((runs["full"] / "labels.json").read_text())))
    np.testing.assert_array_equal(got["mask"].numpy(), want)
    with Image.open(root / "masks" / "wide_mask.png") as m:
        np.testing.assert_array_equal(np.asarray(m), want[0])  # predict and export give the same mask
    refused = tlkit("segment", "export", runs["full"], "--format", "tflite", cwd=root, timeout=60)
    assert "not available" in assert_one_line_error(refused)


def test_a_mask_of_another_size_than_its_photo_is_one_line_and_exit_2(tmp_path: Path):
    made = tlkit("segment", "sample-data", "bad", "--train", "3", "--val", "2", "--test", "0", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    mask = sorted((tmp_path / "bad" / "train" / "masks").iterdir())[0]
    with Image.open(mask) as m:
        m.resize((m.width // 2, m.height)).save(mask)
    refused = tlkit(*ARGS, "--data", "bad", cwd=tmp_path, timeout=120)
    line = assert_one_line_error(refused)
    assert mask.name in line or mask.stem in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
