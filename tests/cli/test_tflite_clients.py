"""The exported ``.tflite`` files run as they are in the clients people deploy with.

One tiny run exported with ``tlkit export --format tflite`` (shared with test_limits.py), then:

* MediaPipe Tasks' ``ImageClassifier`` runs the README's three lines on a real photo (the
  cat, scikit-image's ``chelsea``): the category names come from the metadata embedded in the
  file, and the scores are the SavedModel's;
* the LiteRT interpreter (``ai_edge_litert``, no TensorFlow) runs the same file, its labels
  read from the file itself (a ``.tflite`` with metadata is also a zip holding labels.txt).

"The same photo": the photo is resized once here to the model's input size and saved as PNG
(lossless), so MediaPipe's own resize is a no-op and the SavedModel's ``predict_pixels`` gets
exactly the pixels MediaPipe feeds the model. Both run the same float32 graph on the same
pixels, so scores must agree to float rounding: tolerance 1e-5 (the export's own TFLite check
allows 1e-4 against Keras).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env
from PIL import Image
from skimage import data
from test_limits import tiny_export

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
TOLERANCE = 1e-5
LABELS = ["bright", "dark", "stripes"]  # the tiny run's classes (test_limits._RUN_SCRIPT)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    result = tiny_export(tmp_path_factory)
    root = Path(result["path"])
    size = json.loads((root / "tlkit.json").read_text())["input_size"]
    photo = Path(result["path"]).parent.parent / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((size[1], size[0]), Image.BILINEAR).save(photo)
    return {**result, "photo": photo, "size": size}


def readme_mediapipe_lines() -> str:
    """The README's Python block that runs an exported .tflite in MediaPipe."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "ImageClassifier" in b]
    assert len(found) == 1, found
    return found[0]


_CLIENTS = textwrap.dedent(r"""
    import io, json, sys, zipfile
    import numpy as np
    from PIL import Image
    from ai_edge_litert.interpreter import Interpreter
    export, photo = sys.argv[1], sys.argv[2]
    pixels = np.asarray(Image.open(photo).convert("RGB"), np.float32)[None]
    out = {}
    for variant in ("float32", "dynamic_int8", "int8"):
        path = f"{export}/tflite/model_{variant}.tflite"
        raw = open(path, "rb").read()
        labels = zipfile.ZipFile(io.BytesIO(raw)).read("labels.txt").decode().split("\n")
        runner = Interpreter(model_path=path).get_signature_runner("predict_pixels")
        dtype = runner.get_input_details()["pixels"]["dtype"]
        res = runner(pixels=pixels.astype(dtype))  # full-integer int8 takes the uint8 pixels as they are
        scale, zero = runner.get_output_details()["scores"]["quantization"]
        scores = res["scores"][0].astype(np.float32)
        if res["scores"].dtype != np.float32:
            scores = (scores - zero) * scale  # as an app dequantises uint8 scores
        out[variant] = {"labels": labels, "outputs": sorted(res), "input": np.dtype(dtype).name,
                        "scores": scores.tolist()}
    out["litert_needs_tensorflow"] = "tensorflow" in sys.modules
    import tensorflow as tf
    served = tf.saved_model.load(export)
    out["saved_model"] = served.signatures["predict_pixels"](pixels=tf.constant(pixels))["scores"][0].numpy().tolist()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def clients(exported) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENTS, exported["path"], str(exported["photo"])],
        env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_export_says_the_models_carry_metadata(exported):
    card = json.loads((Path(exported["path"]) / "tlkit.json").read_text())
    meta = card["tflite"]["metadata"]
    assert meta["embedded"] is True and meta["writer"].startswith("mediapipe ")
    assert meta["input"] == {"color_space": "RGB", "size": exported["size"], "norm_mean": [0.0], "norm_std": [1.0]}
    assert card["tflite"]["outputs"] == {"scores": ["float32", [-1, 3]]}
    assert "with image-classifier metadata" in exported["stdout"]
    assert "metadata skipped" not in exported["stderr"]


def test_mediapipe_runs_the_readme_lines_on_a_photo(exported, clients):
    code = readme_mediapipe_lines()
    model = Path(exported["path"]) / "tflite" / "model_float32.tflite"
    paths = re.findall(r'"([^"]+\.(?:tflite|jpg|png))"', code)
    assert len(paths) == 2, code  # the model and the photo: the only things a user changes
    code = code.replace(paths[0], str(model)).replace(paths[1], str(exported["photo"]))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    found = re.findall(
        r"Category\(index=(\d+), score=([\d.e-]+), display_name=None, category_name='([^']*)'\)", proc.stdout
    )
    assert len(found) == 3, proc.stdout  # max 5 shown; the tiny run has 3 classes
    # Names from the embedded metadata (not indices), in the model's class order.
    assert all(LABELS[int(i)] == name for i, _, name in found), found
    ref = np.array(clients["saved_model"])
    got = np.array([float(s) for _, s, _ in found])
    assert sorted(int(i) for i, _, _ in found) == [0, 1, 2] and list(got) == sorted(got, reverse=True)
    np.testing.assert_allclose(got, ref[[int(i) for i, _, _ in found]], atol=TOLERANCE)


def test_litert_runs_both_models_with_their_embedded_labels(clients):
    assert not clients["litert_needs_tensorflow"]
    ref = np.array(clients["saved_model"])
    assert ref.shape == (3,) and abs(ref.sum() - 1) < 1e-5
    for variant in ("float32", "dynamic_int8", "int8"):
        got = clients[variant]
        assert got["labels"] == LABELS and got["outputs"] == ["scores"]
    assert [clients[v]["input"] for v in ("float32", "dynamic_int8", "int8")] == ["float32", "float32", "uint8"]
    np.testing.assert_allclose(clients["float32"]["scores"], ref, atol=TOLERANCE)
    # Dynamic-range int8: weights quantised, so only close; the photo's top class is kept.
    assert np.argmax(clients["dynamic_int8"]["scores"]) == np.argmax(ref)
    assert np.abs(np.array(clients["dynamic_int8"]["scores"]) - ref).max() < 0.1
    # Full-integer int8, raw uint8 pixels in: its uint8 scores (steps of 1/256) dequantised are close to the
    # float model's (the tiny run's scores are nearly flat on purpose, so its top class is not compared).
    assert np.abs(np.array(clients["int8"]["scores"]) - ref).max() < 0.02


def test_readme_block_is_three_lines():
    assert len(readme_mediapipe_lines().strip().splitlines()) == 3
    ast.parse(readme_mediapipe_lines())
