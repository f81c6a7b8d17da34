"""Multi-label tagging end to end through the installed command: a CSV with a ``labels`` column in,
finetune (sigmoid head, thresholds chosen on validation), evaluate, predict, export, and the
SavedModel answering the labels at or above their thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, assert_one_line_error, tlkit
from multilabel_data import LABELS, make_multilabel_csv, make_multilabel_image
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """(working folder, run directory, new images) of one tiny multi-label finetune."""
    cwd = tmp_path_factory.mktemp("multilabel")
    csv_path = make_multilabel_csv(cwd / "data", n=40, seed=0)
    r = tlkit("finetune", "--data", csv_path, "--name", "tags", *TINY_RUN, "--epochs", "3", "--finetune-epochs", "0",
              cwd=cwd, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # Images the run never saw (no score can sit exactly on a threshold chosen on validation scores).
    rng = np.random.default_rng(7)
    images = []
    for i, kinds in enumerate((["disc"], ["square", "stripe"], [], ["triangle", "disc", "square"])):
        images.append(cwd / f"new{i}.png")
        Image.fromarray(make_multilabel_image(kinds, 32, rng)).save(images[-1])
    return cwd, cwd / "runs" / "tags", images


def _thresholds(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "thresholds.json").read_text())


def test_finetune_records_a_multi_label_run(run):
    _, run_dir, _ = run
    labels = json.loads((run_dir / "labels.json").read_text())
    assert labels == list(LABELS)
    thresholds = _thresholds(run_dir)
    assert list(thresholds) == labels  # one per class, in class order
    assert all(0.0 <= t <= 1.0 for t in thresholds.values())
    assert json.loads((run_dir / "config.json").read_text())["multi_label"] is True
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["multi_label"] is True and metrics["split"] == "val"
    assert [metrics["per_class"][c]["threshold"] for c in labels] == list(thresholds.values())
    assert {"macro_ap", "micro_ap", "macro_f1", "micro_f1", "exact_match"} <= set(metrics)
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"f1", "pr_auc", "val_f1", "val_pr_auc"} <= set(header)
    assert (run_dir / "per_class.png").is_file() and not (run_dir / "confusion.png").exists()
    assert "thresholds.json" in (run_dir / "train.log").read_text()


def test_evaluate_prints_the_runs_figures(run):
    cwd, run_dir, _ = run
    r = tlkit("evaluate", run_dir, cwd=cwd, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.strip() and ln.split()[0] in LABELS}
    assert sorted(rows) == sorted(LABELS)
    for c in LABELS:  # the same val images and thresholds as the run's own evaluation
        ap = metrics["per_class"][c]["ap"]
        assert rows[c][1] == ("-" if ap is None else f"{ap:.4f}")
        assert rows[c][2] == f"{metrics['per_class'][c]['f1']:.4f}"
    assert f"macro AP {metrics['macro_ap']:.4f}" in r.stdout and f"micro F1 {metrics['micro_f1']:.4f}" in r.stdout


def test_predict_and_export_answer_the_labels_above_threshold(run):
    cwd, run_dir, images = run
    thresholds = _thresholds(run_dir)
    r = tlkit("predict", run_dir, *images, cwd=cwd, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    printed: dict[str, list[str]] = {}
    for ln in r.stdout.splitlines()[1:]:
        image, label = ln.split()[:2]
        printed.setdefault(Path(image).name, []).append(label)

    r = tlkit("export", run_dir, "--out", cwd / "served", "--quiet", cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((cwd / "served" / "1" / "tlkit.json").read_text())
    assert card["multi_label"]["thresholds"] == thresholds

    import tensorflow as tf

    serve = tf.saved_model.load(str(cwd / "served" / "1")).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([p.read_bytes() for p in images]))
    scores = out["scores"].numpy()
    t = np.asarray(list(thresholds.values()), dtype=np.float32)
    want = scores >= t[None, :]
    assert np.array_equal(out["above_threshold"].numpy(), want)
    names = out["labels_above_threshold"].numpy().astype(str)
    assert (names == np.where(want, np.asarray(LABELS)[None, :], "")).all()
    for p, row, mask in zip(images, scores, want):
        expected = [LABELS[i] for i in np.argsort(-row, kind="stable") if mask[i]] or ["(none)"]
        assert printed[p.name] == expected  # predict's labels: the model's scores at the stored thresholds


def test_class_weight_auto_is_refused_for_a_multi_label_run(tmp_path):
    csv_path = make_multilabel_csv(tmp_path / "data", n=8, seed=1)
    r = tlkit("finetune", "--data", csv_path, "--name", "cw", *TINY_RUN, "--class-weight", "auto", cwd=tmp_path)
    assert "--class-weight auto" in assert_one_line_error(r)
    assert not (tmp_path / "runs" / "cw").exists()
