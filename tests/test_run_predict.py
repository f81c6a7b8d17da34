"""``tlkit predict RUN_DIR IMAGE...`` (tlkit.finetune.run_predict) on hand-made run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")


def _run(tmp_path, multi_label: bool, thresholds=None):
    from tlkit.finetune import heads, recorder

    run = tmp_path / ("ml" if multi_label else "sl")
    run.mkdir()
    model = heads.build_classifier(
        "cifar_example", num_classes=3, weights=None, input_size=(32, 32), multi_label=multi_label
    )
    recorder.save_checkpoint(model, run / "best.keras")
    (run / "labels.json").write_text(json.dumps(["a", "b", "c"]))
    if thresholds is not None:
        (run / "thresholds.json").write_text(json.dumps(dict(zip("abc", thresholds))))
    return run, model


def _images(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_multi_label_run_answers_labels_at_or_above_threshold(tmp_path):
    from tlkit.finetune.run_predict import is_run_dir, predict_run_files, table_rows

    images = _images(tmp_path)
    run, model = _run(tmp_path, True, thresholds=[0.0, 2.0, 0.5])  # a: always, b: never, c: by score
    assert is_run_dir(str(run)) and not is_run_dir(str(images[0]))
    facts, results, errors = predict_run_files(str(run), [str(p) for p in images])
    assert facts["multi_label"] and not errors
    x = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in images])
    scores = np.asarray(model.predict_on_batch(x))
    for r, row in zip(results, scores):
        want = {"a"} | ({"c"} if row[2] >= np.float32(0.5) else set())
        assert {p["label"] for p in r["labels"]} == want
        assert r["scores"]["c"] == pytest.approx(float(row[2]), abs=1e-5)
    header, rows = table_rows(facts, results)
    assert header == ("image", "label", "score", "threshold") and all(row[1] != "b" for row in rows)
    _, none_rows = table_rows(facts, [{"image": "x.png", "labels": []}])
    assert none_rows == [("x.png", "(none)", "", "")]


def test_single_label_run_answers_its_top_classes(tmp_path):
    from tlkit.finetune.run_predict import predict_run_files

    images = _images(tmp_path, 1)
    run, model = _run(tmp_path, False)
    facts, results, _ = predict_run_files(str(run), [str(images[0])], top=2)
    assert not facts["multi_label"]
    probs = np.asarray(model.predict_on_batch(np.asarray(Image.open(images[0]), dtype=np.float32)[None]))[0]
    assert [p["name"] for p in results[0]["predictions"]] == [("a", "b", "c")[i] for i in np.argsort(-probs)[:2]]
