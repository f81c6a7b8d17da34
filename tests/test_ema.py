"""``--ema DECAY`` (tlkit.finetune.ema): the average is the warmed-up formula, differs from the raw
weights, and is what validation, ``best.keras`` and evaluation use; ``last.keras`` keeps the raw
weights with the average in the optimizer; the stage switch and the multi-worker loop keep it."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlkit.errors import ConfigError  # noqa: E402
from tlkit.finetune import ema, train  # noqa: E402
from tlkit.finetune.config import FinetuneConfig, check_config  # noqa: E402


def _data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")


def _model(decay: float | None = 0.9, optimizer: str = "adam", lr: float = 0.1) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.add(keras.layers.Softmax())
    train.compile_model(model, train.StageConfig(stage=1, epochs=1, lr=lr, optimizer=optimizer, ema=decay), 2)
    model.optimizer.build(model.trainable_variables)
    return model


def _values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_average_is_the_warmed_up_formula_and_differs_from_the_raw_weights(optimizer):
    model = _model(0.9, optimizer)
    assert type(model.optimizer) is {"adam": ema.EmaAdam, "sgd": ema.EmaSGD}[optimizer]
    x, y = _data()
    average = _values(model.trainable_variables)  # the average starts at the weights
    for t in range(6):
        model.train_on_batch(x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8])
        d = np.float32(min(0.9, (1 + t) / (10 + t)))
        average = [d * a + (np.float32(1) - d) * w for a, w in zip(average, _values(model.trainable_variables))]
    assert ema.updates(model) == 6
    for by_hand, kept, raw in zip(average, ema.averages(model), _values(model.trainable_variables)):
        np.testing.assert_allclose(kept, by_hand, rtol=1e-6, atol=1e-7)
        assert np.abs(kept - raw).max() > 1e-3


def test_warm_up_values():
    assert ema.decay_after(0, 0.999) == pytest.approx(0.1)
    assert ema.decay_after(80, 0.999) == pytest.approx(0.9)
    assert ema.decay_after(890, 0.999) == pytest.approx(0.99)
    assert ema.decay_after(10**6, 0.999) == 0.999
    assert ema.decay_after(10**6, 0.9) == 0.9


def test_decay_outside_zero_one_and_cache_features_are_refused():
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="--ema takes a decay strictly between 0 and 1"):
            check_config(FinetuneConfig(data="x", base="cifar_example", ema=bad))
    with pytest.raises(ConfigError, match="--ema with --cache-features"):
        check_config(FinetuneConfig(data="x", base="cifar_example", ema=0.99, cache_features=True))
    check_config(FinetuneConfig(data="x", base="cifar_example", ema=0.999))


def test_swap_is_exact_where_keras_swap_rounds():
    model = _model()
    x, y = _data()
    model.train_on_batch(x[:8], y[:8])
    model.trainable_variables[0].assign(np.full((4, 8), 1e-8, "float32"))
    model.optimizer._model_variables_moving_average[0].assign(np.ones((4, 8), "float32"))
    raw = _values(model.trainable_variables)
    with ema.ema_weights(model):
        assert all(np.array_equal(w, a) for w, a in zip(_values(model.trainable_variables), ema.averages(model)))
    assert all(np.array_equal(w, r) for w, r in zip(_values(model.trainable_variables), raw))
    # Keras' SwapEMAWeights (add, subtract) loses the small raw value next to a large average.
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap.on_test_begin()
    swap.on_test_end()
    assert not np.array_equal(_values(model.trainable_variables)[0], raw[0])


def test_checkpoint_keeps_the_average_and_its_count(tmp_path):
    model = _model()
    x, y = _data()
    for i in range(3):
        model.train_on_batch(x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8])
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert type(back.optimizer) is ema.EmaAdam and ema.updates(back) == 3
    saved, loaded = _values(model.optimizer.variables), _values(back.optimizer.variables)
    assert len(saved) == len(loaded) and all(np.array_equal(a, b) for a, b in zip(saved, loaded))


def _fit_one_stage(tmp_path, fit):
    """One stage of 2 epochs through ``fit`` (train.fit_stage or the multi-worker loop): what it saved."""
    model = _model(0.8, lr=0.2)
    x, y = _data(64)
    cfg = train.StageConfig(stage=1, epochs=2, lr=0.2, ema=0.8)
    seen = {}

    class Look(keras.callbacks.Callback):  # after the recorder: what the epoch's end left
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = (_values(self.model.trainable_variables), ema.averages(self.model), dict(logs))

    fit(model, x[:48], y[:48], x[48:], y[48:], cfg, Look())
    return model, x[48:], y[48:], seen


def _accuracy(weights, x, y) -> float:
    return _scores(weights, x, y)[0]


def _scores(weights, x, y) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the toy model with these weights."""
    model = _model(None)
    model.set_weights(weights)
    probs = np.asarray(model.predict_on_batch(x))
    loss = float(np.mean(keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y, probs))))
    return float(np.mean(np.argmax(probs, -1) == y)), loss


def _check_saved(tmp_path, model, xv, yv, seen):
    from tlkit.finetune.recorder import read_history, read_state

    assert ema.updates(model) == 12  # 2 epochs of 6 steps
    state = read_state(tmp_path)
    history = read_history(tmp_path / "history.csv")
    best_epoch = next(r["epoch"] for r in history if r["val_accuracy"] == state["best"])
    raw_last, average_last, _ = seen[1]
    # Validation ran on the EMA weights: the accuracy logged is theirs.
    for raw, average, logs in seen.values():
        accuracy, loss = _scores(average, xv, yv)
        assert logs["val_accuracy"] == pytest.approx(accuracy) and logs["val_loss"] == pytest.approx(loss, rel=1e-5)
        assert abs(_scores(raw, xv, yv)[1] - loss) > 1e-3  # the raw model's loss is another
    # best.keras: the EMA weights as its weights; evaluating it gives the EMA model's accuracy.
    best = keras.saving.load_model(tmp_path / "best.keras")
    assert all(np.array_equal(b, a) for b, a in zip(best.get_weights(), seen[best_epoch][1]))
    assert _accuracy(best.get_weights(), xv, yv) == pytest.approx(state["best"])
    # last.keras: the raw weights, the average in its optimizer (what --resume needs).
    last = keras.saving.load_model(tmp_path / "last.keras")
    assert all(np.array_equal(w, r) for w, r in zip(last.get_weights(), raw_last))
    assert all(np.array_equal(w, a) for w, a in zip(ema.averages(last), average_last))
    assert ema.updates(last) == 12
    # The stage ends on its EMA weights (Keras' fit's finalize_variable_values; the loop does it too).
    assert all(np.array_equal(w, a) for w, a in zip(_values(model.trainable_variables), average_last))


def test_fit_validates_and_saves_as_documented(tmp_path):
    def fit(model, x, y, xv, yv, cfg, look):
        train.fit_stage(
            model, (x, y), (xv, yv), cfg, run_dir=tmp_path, initial_epoch=0, stage_start=0, best=None,
            class_weight=None, extra_callbacks=[look], verbose=0, batch_size=8,
        )  # fmt: skip

    _check_saved(tmp_path, *_fit_one_stage(tmp_path, fit))


def test_multi_worker_loop_updates_validates_and_saves_the_same_way(tmp_path):
    import tensorflow as tf

    from tlkit.finetune.distributed_train import fit_stage_distributed

    def fit(model, x, y, xv, yv, cfg, look):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)
        fit_stage_distributed(
            model, ds, val, cfg, strategy=tf.distribute.get_strategy(), run_dir=tmp_path, initial_epoch=0,
            stage_start=0, best=None, num_classes=2, extra_callbacks=[look], log=lambda s: None,
        )  # fmt: skip

    _check_saved(tmp_path, *_fit_one_stage(tmp_path, fit))


def test_stage_switch_starts_from_the_average_and_counts_on():
    model = _model()
    x, y = _data()
    for i in range(4):
        model.train_on_batch(x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8])
    average = ema.averages(model)
    ema.finalize(model)
    count = ema.updates(model)
    train.compile_model(model, train.StageConfig(stage=2, epochs=1, lr=0.01, ema=0.9), 2)
    model.optimizer.build(model.trainable_variables)
    ema.carry_count(model, count)
    assert ema.updates(model) == 4
    assert all(np.array_equal(w, a) for w, a in zip(_values(model.trainable_variables), average))
    assert all(np.array_equal(w, a) for w, a in zip(ema.averages(model), average))
    model.train_on_batch(x[:8], y[:8])  # the next update's decay: min(0.9, 5/14), not a restart at 1/10
    d = np.float32(5 / 14)
    expected = [d * a + (np.float32(1) - d) * w for a, w in zip(average, _values(model.trainable_variables))]
    for kept, want in zip(ema.averages(model), expected):
        np.testing.assert_allclose(kept, want, rtol=1e-6, atol=1e-7)
    json.dumps(model.optimizer.get_config())  # the config a checkpoint writes


def test_batchnorm_moving_statistics_are_not_averaged():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Softmax()]
    )
    train.compile_model(model, train.StageConfig(stage=1, epochs=1, lr=0.1, ema=0.9), 3)
    model.optimizer.build(model.trainable_variables)
    x, _ = _data()
    model.train_on_batch(x[:8], np.arange(8) % 3)
    assert len(ema.averages(model)) == len(model.trainable_variables) == 4  # kernel, bias, gamma, beta
    moving = _values(model.non_trainable_variables)
    assert len(moving) == 2 and np.abs(moving[0]).max() > 0  # the running mean moved, unaveraged
    with ema.ema_weights(model):
        assert all(np.array_equal(a, b) for a, b in zip(_values(model.non_trainable_variables), moving))
