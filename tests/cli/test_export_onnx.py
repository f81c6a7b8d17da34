"""``tlkit export --format onnx`` as a user runs it: the file loads in a fresh ONNX Runtime session and
ranks a real photo as the SavedModel does; without the deploy extra the flag is refused at once.

EfficientNet-Lite0 (offline ImageNet weights) is exported once for the module: a cat photo makes
the top-5 comparison mean something (1000 classes), and it is the smallest ImageNet base.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli_env, tlkit
from PIL import Image

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
SCORE_TOLERANCE = 1e-4  # the export's own tolerance (tlkit.export.verify.TOLERANCE)

# A Python started with this folder on PYTHONPATH cannot import these: a machine without the extra
# (and, to prove the refusal comes before any work, without TensorFlow).
BLOCKER = """
import sys


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("onnxruntime", "tensorflow"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Blocked())
"""


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("onnx_export")
    res = tlkit(
        "export", "--base", "efficientnet_lite0", "--format", "onnx", "--out", root / "lite0", cwd=root, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return {"path": root / "lite0" / "1", "stdout": res.stdout, "stderr": res.stderr}


@pytest.mark.slow
def test_onnx_in_a_fresh_session_ranks_a_cat_as_the_saved_model_does(onnx_export):
    import onnxruntime as ort
    import tensorflow as tf
    from skimage import data

    from tlkit.export.serving_decode import decode_images

    path: Path = onnx_export["path"]
    card = json.loads((path / "tlkit.json").read_text())
    entry = card["onnx"]
    assert entry["file"] == "onnx/model.onnx" and entry["opset"] == 17
    assert entry["inputs"] == {"pixels": ["float32", [-1, 224, 224, 3]]}
    assert entry["outputs"]["scores"] == ["float32", [-1, 1000]] and entry["outputs"]["top_k_ids"] == ["int32", [-1, 5]]
    check = entry["verification"]
    assert check["passed"] and check["max_abs_diff_vs_keras"] <= SCORE_TOLERANCE
    assert check["top_k_vs_saved_model"]["mismatches"] == 0 and check["images"] == 96 + 7  # crops + probes
    assert (path / "onnx" / "labels.txt").read_text() == (path / "assets" / "labels.txt").read_text()
    assert (
        "onnx: 18." in onnx_export["stdout"]
        and "top-5 as the SavedModel's on 103 of 103 photos" in (onnx_export["stdout"])
    )
    assert "table_initializer" not in onnx_export["stderr"]  # the conversion's noise is kept quiet

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=95)
    jpeg = buf.getvalue()
    served = tf.saved_model.load(str(path)).signatures["serving_default"](image_bytes=tf.constant([jpeg]))
    # The ONNX client decodes and resizes as the serving graph does (centre crop for a base), then sends pixels.
    pixels = decode_images(tf.constant([jpeg]), (224, 224), card["preprocessing"]["resize"]).numpy()
    session = ort.InferenceSession(str(path / entry["file"]), providers=["CPUExecutionProvider"])
    scores, ids, top = session.run(["scores", "top_k_ids", "top_k_scores"], {"pixels": pixels})
    np.testing.assert_array_equal(ids, served["top_k_ids"].numpy())
    np.testing.assert_allclose(scores, served["scores"].numpy(), atol=SCORE_TOLERANCE)
    np.testing.assert_allclose(top, served["top_k_scores"].numpy(), atol=SCORE_TOLERANCE)
    assert ids[0, 0] in CATS and top[0, 0] > 0.2, (ids, top)


def test_without_the_deploy_extra_the_flag_is_refused_at_once(tmp_path):
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCKER)
    env = cli_env(PYTHONPATH=os.pathsep.join(filter(None, [str(block), os.environ.get("PYTHONPATH")])))
    t = time.monotonic()
    res = tlkit(
        "export", "--base", "efficientnet_lite0", "--format", "onnx", "--out", tmp_path / "m", cwd=tmp_path, env=env
    )
    elapsed = time.monotonic() - t
    line = assert_one_line_error(res, rc=2)
    assert "--format onnx needs onnxruntime" in line and 'pip install "tlkit[deploy]"' in line, line
    assert not (tmp_path / "m").exists()
    assert elapsed < 30, elapsed  # no TensorFlow (blocked here), no model: a lookup
