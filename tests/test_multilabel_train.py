"""Multi-label training pieces: the sigmoid head's compile, checkpoint round trip, the multi-worker step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def model():
    from tlkit.finetune import heads, train

    m = heads.build_classifier(
        "cifar_example", num_classes=3, weights=None, input_size=(32, 32), multi_label=True, dropout=0
    )
    train.compile_model(m, train.StageConfig(stage=1, epochs=1, lr=1e-3, multi_label=True), 3)
    return m


def test_sigmoid_head_compiles_to_binary_cross_entropy(model, tmp_path):
    import keras

    from tlkit.finetune import recorder
    from tlkit.finetune.multilabel import is_multi_label

    assert is_multi_label(model)
    assert model.loss == "binary_crossentropy"
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    probs = np.asarray(model.predict_on_batch(x))
    assert probs.shape == (4, 3) and not np.allclose(probs.sum(1), 1.0)  # independent scores
    recorder.save_checkpoint(model, tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert is_multi_label(loaded)  # a resumed or exported run finds its head again


def test_monitor_is_pr_auc():
    from tlkit.finetune import train

    cbs = train.stage_callbacks(
        train.StageConfig(stage=1, epochs=1, lr=1e-3, multi_label=True), "/nonexistent", 0, None
    )
    assert cbs[-1].monitor == "val_pr_auc"


def test_distributed_eval_step_equals_keras_evaluate(model):
    """The multi-worker loop's own loss and metrics (sums reduced over workers) are Keras' own."""
    import tensorflow as tf

    from tlkit.finetune import distributed_train as dt

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    y = (rng.uniform(size=(10, 3)) > 0.5).astype("float32")
    _, eval_step = dt._step_fns(model, tf.distribute.get_strategy(), 3, None)
    totals, counts = dt._run_epoch(eval_step, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    logs = dt._multi_label_logs(totals, counts, "val_", 3)
    ref = model.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    assert logs["val_loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert logs["val_f1"] == pytest.approx(ref["f1"], rel=1e-5)
    assert logs["val_pr_auc"] == pytest.approx(ref["pr_auc"], rel=1e-5)
    assert totals[3] == 10
