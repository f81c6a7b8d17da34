"""One pixel path: one image file through five tlkit paths gives the same classes and scores.

The paths: ``tlkit predict --resize plain`` (CLI), ``evaluate`` on a one-image folder, ``extract``
at the classifier tap, dense evaluation at the window size (the image resized square to the
model's input size: a 1x1 map) and the exported SavedModel's ``image_bytes`` signature
(``tlkit export --resize plain``, CLI). Each decodes the JPEG, resizes it with
:mod:`tlkit.data.resize` and runs a model that preprocesses inside; they must agree on the top-5
classes and on the scores within 1e-3 (relative).

Two bases: EfficientNet-Lite0 with its real ImageNet weights (offline), and ResNet50 from
keras.applications built without weights (random, seeded; saved to a weights file that every
path loads, as a user's own weights file would be). ResNet50 uses "caffe" preprocessing (RGB->BGR
and mean subtraction), so a path that skipped, repeated or reordered it would show. A random
ResNet50's scores are peaked enough on this photo for a stable top-5 (unlike a random
MobileNetV2 or EfficientNet-B0, whose scores are all 0.001).

``evaluate`` needs a run directory: the cheapest honest one is the base's ImageNet classifier
with preprocessing inside (``tlkit.build(..., include_preprocessing=True)``, the layout a
finetuned run's model has) saved as ``best.keras``, with 1000 class names and a config naming
the folder; it is read back with :func:`tlkit.finetune.evaluation_runs.load_run` and run through
the functions ``tlkit evaluate`` runs (``make_dataset`` + ``predict_dataset``), and
:func:`evaluate_runs` itself must report top-1 = 1 for the folder labelled with predict's class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RTOL = 1e-3
ATOL = 1e-7  # scores far below any top-5 score (float32 softmax of a -20 logit)
BASES = ("efficientnet_lite0", "resnet50")
PATHS = ("evaluate", "extract", "dense", "saved_model")

pytestmark = pytest.mark.slow


def _tlkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TLKIT_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tlkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """scikit-image's cat photo (300x451) as a JPEG in ``data/c0/``; ``data/c1/`` holds the coffee
    photo, because extraction (like training) wants a folder of at least two classes."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("parity") / "data"
    for name, cls in (("chelsea", "c0"), ("coffee", "c1")):
        (root / cls).mkdir(parents=True)
        Image.fromarray(getattr(data, name)()).save(root / cls / f"{name}.jpg", quality=90)
    return root / "c0" / "chelsea.jpg"


def _weights(base: str, root: Path) -> str:
    """'imagenet' for Lite0; for ResNet50 a file of seeded random weights (built without weights)."""
    if base == "efficientnet_lite0":
        return "imagenet"
    import keras

    import tlkit

    keras.utils.set_random_seed(0)
    path = root / f"{base}_random.weights.h5"
    tlkit.build(base, weights=None).save_weights(path)
    return str(path)


def _evaluate(base: str, weights: str, photo: Path, root: Path, top1: int) -> np.ndarray:
    """Scores through a run directory and the functions ``tlkit evaluate`` runs."""
    import dataclasses

    import tlkit
    from tlkit import evaluate
    from tlkit.data import pipeline as tldata
    from tlkit.finetune.evaluation_runs import evaluate_runs, load_run

    run = root / f"run_{base}"
    run.mkdir()
    model = tlkit.build(base, weights=weights, include_preprocessing=True)
    model.save(run / "best.keras")
    labels = [f"c{i}" for i in range(1000)]
    (run / "labels.json").write_text(json.dumps(labels))
    (run / "config.json").write_text(json.dumps({"base": base, "data": str(photo.parent.parent), "seed": 0}))
    # The folder's one class is named after predict's top-1: evaluate must then score top-1 = 1.
    labelled = root / f"data_{base}" / f"c{top1}"
    labelled.mkdir(parents=True)
    (labelled / photo.name).write_bytes(photo.read_bytes())
    metrics = evaluate_runs([str(run)], data=str(labelled.parent), split="all", batch_size=1)[str(run)]
    assert metrics["count"] == 1 and metrics["top1"] == 1.0, metrics

    loaded, names, _ = load_run(run)
    assert names == labels
    source = tldata.resolve(str(labelled.parent), val_split=0.0, seed=0, min_classes=1)
    source = dataclasses.replace(source, items=source.items.assign(split="train"))
    ds = tldata.make_dataset(source, "train", image_size=tuple(loaded.input_shape[1:3]), batch_size=1, training=False)
    _, probs = evaluate.predict_dataset(loaded, ds)
    return probs[0]


def _extract(base: str, weights: str, photo: Path, root: Path) -> np.ndarray:
    from tlkit.features.extract import extract
    from tlkit.features.store import load_features

    out = root / f"features_{base}.npz"
    extract(base, ["classifier"], str(photo.parent.parent), str(out), weights=weights, val_split=0.0, progress=False)
    feats, rows, _ = load_features(out)
    assert feats["classifier"].shape == (2, 1000)
    [row] = [i for i, p in enumerate(rows["path"]) if Path(p).name == photo.name]
    return feats["classifier"][row]


def _dense(base: str, weights: str, photo: Path) -> np.ndarray:
    import tlkit
    from tlkit.dense.evaluator import DenseEvaluator

    side = tlkit.get_spec(base).input_shape[0]
    ev = DenseEvaluator.from_name(base, weights=weights)
    result = ev.evaluate(str(photo), scales=(side,), resize="square")[0]
    assert result.maps[0].map_shape == (1, 1, 1000)  # one window: the whole resized image
    return result.scores


def _saved_model(base: str, weights: str, photo: Path, root: Path) -> np.ndarray:
    import tensorflow as tf

    out = root / f"export_{base}"
    res = _tlkit(
        "export",
        "--base",
        base,
        "--weights",
        weights,
        "--resize",
        "plain",
        "--out",
        str(out),
        "--version",
        "1",
        cwd=root,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    served = tf.saved_model.load(str(out / "1")).signatures["serving_default"]
    scores = served(image_bytes=tf.constant([photo.read_bytes()]))["scores"].numpy()
    return scores[0]


@pytest.fixture(scope="module", params=BASES)
def paths(request, photo) -> dict:
    """{base, predict: (top-5 ids, top-5 probs), crop: top-5 probs with --resize crop, <path>: scores}."""
    base = request.param
    root = photo.parent.parent.parent
    weights = _weights(base, root)
    res = _tlkit("predict", str(photo), "--base", base, "--weights", weights, "--resize", "plain", "--json", cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    preds = json.loads(res.stdout)["results"][0]["predictions"]
    ids = [p["index"] for p in preds]
    out = {"base": base, "predict": (ids, np.array([p["prob"] for p in preds]))}

    from tlkit.cli.commands.predict import predict_files

    crop, _ = predict_files([str(photo)], base=base, weights=weights, resize="crop")
    out["crop"] = {p["index"]: p["prob"] for p in crop[0]["predictions"]}
    out["evaluate"] = _evaluate(base, weights, photo, root, ids[0])
    out["extract"] = _extract(base, weights, photo, root)
    out["dense"] = _dense(base, weights, photo)
    out["saved_model"] = _saved_model(base, weights, photo, root)
    return out


def _top5(scores: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:5]]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_gives_predicts_top5_and_scores(paths, path):
    ids, probs = paths["predict"]
    scores = np.asarray(paths[path], dtype=np.float64)
    assert scores.shape == (1000,)
    assert _top5(scores) == ids, f"{paths['base']} {path}: top-5 {_top5(scores)} vs predict's {ids}"
    np.testing.assert_allclose(scores[ids], probs, rtol=RTOL, err_msg=f"{paths['base']} {path} vs predict")


def test_all_paths_agree_on_every_score(paths):
    ref = np.asarray(paths["saved_model"], dtype=np.float64)
    for path in ("evaluate", "extract", "dense"):
        np.testing.assert_allclose(
            np.asarray(paths[path], dtype=np.float64),
            ref,
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{paths['base']}: {path} vs the SavedModel",
        )


def test_the_comparison_can_tell_another_pixel_path(paths):
    """The centre crop is another view of the same photo: its scores must fall outside the tolerance,
    so a path resizing differently (or preprocessing twice) would fail the tests above."""
    ids, probs = paths["predict"]
    crop = paths["crop"]
    differs = [i for i, p in zip(ids, probs) if i not in crop or abs(crop[i] - p) > RTOL * p]
    assert differs, f"{paths['base']}: the crop policy gave the plain policy's top-5 scores"
