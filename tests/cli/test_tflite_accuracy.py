"""``tlkit export --format tflite`` measures what quantisation costs, through the installed command.

The shared tiny run (:func:`test_limits.tiny_export`) is trained for seconds on a shapes folder and
its softmax flattened (logits x 1e-4), so its full-integer model's uint8 scores tie on every image
(top class: class 0) while the float files keep the trained ranking: a deterministic loss. Its
export must put top-1 per file on the run's validation images in the model card, print them, warn
once on stderr; with ``--strict`` the export is refused and nothing is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli_env, tlkit
from test_limits import tiny_export

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    return tiny_export(tmp_path_factory)


def _val(exported: dict) -> dict:
    return json.loads((Path(exported["run"]) / "val.json").read_text())


# A TFLite client with TensorFlow only (no tlkit): raw uint8 pixels of the PNG files into
# model_int8.tflite, float32 pixels into model_float32.tflite; top-1 against the labels.
_CLIENT = textwrap.dedent(r"""
    import json, sys
    sys.modules["tlkit"] = None
    import numpy as np, tensorflow as tf
    from PIL import Image
    tflite_dir, val_file = sys.argv[1:3]
    val = json.load(open(val_file))
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in val["paths"]])  # 32x32: no resize
    out = {}
    for variant, x in (("int8", pixels), ("float32", pixels.astype(np.float32))):
        run = tf.lite.Interpreter(model_path=f"{tflite_dir}/model_{variant}.tflite").get_signature_runner(
            "predict_pixels")
        scores = run(pixels=x)["scores"]
        out[variant] = {"dtype": str(scores.dtype), "top1": float((scores.argmax(1) == val["labels"]).mean())}
    print(json.dumps(out))
""")


def test_export_measures_top1_per_tflite_file(exported):
    card = json.loads((Path(exported["path"]) / "tlkit.json").read_text())
    tfl, val = card["tflite"], _val(exported)
    acc = tfl["accuracy"]
    assert acc["split"] == "val" and acc["images"] == len(val["paths"]) == 6
    assert acc["keras"] == pytest.approx(val["top1"]) and val["top1"] >= 5 / 6  # what the run script measured
    # The float files rank as Keras does; full-integer int8's scores tie: class 0, 2 of the 6 val images.
    assert acc["float32"] == acc["float16"] == acc["dynamic_int8"] == acc["keras"]
    assert acc["int8"] == pytest.approx(2 / 6)
    assert tfl["max_accuracy_drop"] == 2.0
    # Calibrated on the run's 30 training images (plus the 0/255 range image), through its pixel path.
    cal = tfl["int8_calibration"]
    assert (
        cal["images"] == 31 and cal["source"].startswith("the run's training images") and "train, all" in cal["source"]
    )
    assert tfl["int8_io"]["pixels"]["dtype"] == "uint8" and tfl["int8_io"]["pixels"]["scale"] == pytest.approx(1)
    assert all(tfl["models"][v]["what"] for v in VARIANTS)
    figures = ", ".join(f"{k} {100 * acc[k]:.1f}%" for k in ("keras", *VARIANTS))
    assert "top-1 on 6 val images (" in exported["stdout"] and figures in exported["stdout"], exported["stdout"]
    # A client with TensorFlow only, fed the PNG files' raw pixels, gets the card's figures.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLIENT,
            str(Path(exported["path"]) / "tflite"),
            str(Path(exported["run"]) / "val.json"),
        ],
        env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = json.loads(proc.stdout.splitlines()[-1])
    assert client["int8"] == {"dtype": "uint8", "top1": pytest.approx(acc["int8"])}
    assert client["float32"] == {"dtype": "float32", "top1": pytest.approx(acc["float32"])}


def test_export_warns_once_when_a_quantised_file_loses_accuracy(exported):
    assert exported["returncode"] == 0  # a warning, not a refusal
    warnings = [ln for ln in exported["stderr"].splitlines() if ln.startswith("tlkit export: warning")]
    assert len(warnings) == 1, exported["stderr"][-3000:]
    expected = (
        "tlkit export: warning: quantisation costs more than 2 points of top-1 on 6 val images against "
        "model_float32.tflite's 100.0%: model_int8.tflite 33.3% (-66.7 points)"
    )
    card = json.loads((Path(exported["path"]) / "tlkit.json").read_text())
    if card["tflite"]["accuracy"]["keras"] == 1.0:
        assert warnings[0] == expected
    assert "model_int8.tflite 33.3%" in warnings[0] and "float16" not in warnings[0]
    assert "dynamic_int8" not in warnings[0]
    assert card["tflite"]["accuracy_warning"] == warnings[0].removeprefix("tlkit export: warning: ")


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.mark.slow
def test_strict_refuses_the_export_and_writes_nothing(exported):
    models = Path(exported["path"]).parent  # holds version 1, the export above
    before = _listing(models)
    res = tlkit(
        "export", exported["run"], "--out", models, "--format", "tflite", "--strict", cwd=models.parent, timeout=600
    )
    assert res.returncode == 1, (res.stdout, res.stderr[-3000:])
    assert "Traceback" not in res.stderr
    out = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert out[-1] == "nothing was written." and len(out) == 2, res.stdout
    assert "model_int8.tflite 33.3%" in out[0] and "--strict refuses it" in out[0]
    assert _listing(models) == before  # no version 2, no temporary directory, version 1 untouched


def test_bad_threshold_and_calibration_folder_are_refused_at_once(exported, tmp_path):
    res = tlkit("export", exported["run"], "--format", "tflite", "--max-accuracy-drop", "-1", cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "--max-accuracy-drop: expected percentage points >= 0" in res.stderr
    res = tlkit(
        "export", exported["run"], "--format", "tflite", "--calibration-data", "missing", cwd=tmp_path, timeout=60
    )
    line = assert_one_line_error(res)
    assert "--calibration-data missing is not a folder" in line
    assert not (tmp_path / "saved_models").exists()
