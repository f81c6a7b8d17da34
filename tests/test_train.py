"""Training mechanics: schedules, optimizers, LR range test, class weights, history bookkeeping."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlkit import train
from tlkit.pipeline import FinetuneConfig, finetune


def test_step_and_cosine_schedules():
    step = train.StageConfig(stage=1, epochs=30, lr=0.1, schedule="step", step_epochs=10)
    assert [train.schedule_lr(step, e) for e in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cos = train.StageConfig(stage=1, epochs=10, lr=1.0, schedule="cosine")
    assert train.schedule_lr(cos, 0) == pytest.approx(1.0)
    assert train.schedule_lr(cos, 5) == pytest.approx(0.5)
    assert train.schedule_lr(cos, 10) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        train.schedule_lr(train.StageConfig(stage=1, epochs=1, lr=1, schedule="exp"), 0)


def test_optimizers():
    sgd = train.make_optimizer(train.StageConfig(stage=1, epochs=1, lr=0.01, optimizer="sgd", weight_decay=5e-4))
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and sgd.weight_decay == 5e-4
    assert isinstance(train.make_optimizer(train.StageConfig(stage=1, epochs=1, lr=1e-3)), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="optimizer"):
        train.make_optimizer(train.StageConfig(stage=1, epochs=1, lr=1e-3, optimizer="lion"))


def _toy():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def test_lr_range_test_suggests_a_rate_below_divergence_and_restores_weights():
    model, ds = _toy()
    before = [np.array(w) for w in model.get_weights()]
    found = train.lr_range_test(model, ds, min_lr=1e-5, max_lr=10.0, steps=60)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    lrs, losses = found["lr"], found["loss"]
    assert lrs == sorted(lrs) and len(lrs) == len(losses) > 10
    assert 1e-5 < found["suggested_lr"] < lrs[-1]
    # the loss at the suggestion is lower than at the start of the sweep
    i = lrs.index(found["suggested_lr"])
    assert losses[i] < losses[0]
    # On this toy problem Adam learns between 1e-3 and 1: the pick is neither the
    # noise at the start of the sweep nor the blow-up at its end.
    assert 1e-3 <= found["suggested_lr"] <= 1.0, found["suggested_lr"]


def test_history_truncation_drops_unvouched_rows(tmp_path):
    path = tmp_path / "history.csv"
    for e in range(4):
        train.append_history(path, {"epoch": e, "stage": 1, "loss": 1.0 / (e + 1)})
    with open(path, "a") as f:
        f.write("4,1,1e-")  # a row cut short by a kill mid-write
    train.truncate_history(path, 2)
    assert [r["epoch"] for r in train.read_history(path)] == [0, 1]
    assert train.read_history(path)[1]["loss"] == 0.5


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imb")
    rng = np.random.default_rng(1)
    for cls, n, v in (("many", 30, 40), ("few", 6, 200)):
        (root / cls).mkdir()
        for i in range(n):
            Image.fromarray((rng.integers(0, 30, (16, 16, 3)) + v).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_class_weight_auto_schedule_and_find_lr_in_a_run(tmp_path, imbalanced):
    cfg = FinetuneConfig(data=str(imbalanced), base="cifar_example", weights=None, runs_dir=str(tmp_path),
                         name="cw", input_size=(32, 32), batch_size=8, epochs=2, finetune_epochs=1, unfreeze="all",
                         class_weight="auto", schedule="step", step_epochs=1, optimizer="sgd", lr=0.05,
                         find_lr=True, augment=None)
    finetune(cfg, quiet=True)
    run = tmp_path / "cw"
    log = (run / "train.log").read_text()
    # balanced weights: n / (k * count) with 29 + 5 training images after the 20% split
    assert "class weights: few=" in log
    few = float(log.split("class weights: few=")[1].split(",")[0])
    many = float(log.split("many=")[1].split()[0])
    assert few > 1 > many and few / many == pytest.approx(24 / 5, rel=0.05)
    assert "LR range test: suggested learning rate" in log
    assert (run / "lr_find.png").stat().st_size > 5000
    cfg_saved = json.loads((run / "config.json").read_text())
    hist = train.read_history(run / "history.csv")
    # step decay within each stage: stage 1 epoch 1 runs at a tenth of epoch 0; stage 2 starts at lr/10
    assert hist[1]["lr"] == pytest.approx(hist[0]["lr"] / 10)
    assert hist[0]["lr"] == pytest.approx(cfg_saved["lr"])
    assert hist[2]["lr"] == pytest.approx(cfg_saved["finetune_lr"])
    assert math.isfinite(hist[-1]["loss"])
