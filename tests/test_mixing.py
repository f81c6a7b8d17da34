"""Mixup, CutMix and label smoothing (tlkit.data.mixing, tlkit.finetune.losses): values, seeds, hooks."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tlkit.data import mixing as mx  # noqa: E402
from tlkit.finetune import losses  # noqa: E402

COLOURS = np.array([10.0, 60.0, 120.0, 200.0, 250.0, 30.0], np.float32)  # one constant colour per class


def _batch(h: int = 16, w: int = 20) -> tuple:
    x = np.broadcast_to(COLOURS[:, None, None, None], (len(COLOURS), h, w, 3)).astype(np.float32)
    y = np.eye(len(COLOURS), dtype=np.float32)  # image i is class i
    return tf.constant(x), tf.constant(y)


def _mix(kind: str, key: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = _batch()
    mixing = mx.Mixing(mixup=0.4 if kind == "mixup" else 0.0, cutmix=1.0 if kind == "cutmix" else 0.0, seed=seed)
    xm, ym = mx.mix_batch(x, y, mx.batch_seed(seed, tf.constant(key, tf.int64)), mixing)
    return xm.numpy(), ym.numpy()


@pytest.mark.parametrize("key", [0, 7, 2**32 + 3])
def test_mixup_mixes_labels_by_the_weight_the_pixels_were_mixed_by(key: int):
    xm, ym = _mix("mixup", key)
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
    mixed_rows, lams = 0, []
    for i in range(len(COLOURS)):
        nonzero = np.flatnonzero(ym[i] > 0)
        assert np.ptp(xm[i]) < 1e-3  # a blend of two constant images is constant
        if len(nonzero) == 1:  # paired with itself
            assert nonzero[0] == i and xm[i, 0, 0, 0] == pytest.approx(COLOURS[i])
            continue
        assert len(nonzero) == 2 and i in nonzero
        j = int(nonzero[nonzero != i][0])
        lam = (xm[i, 0, 0, 0] - COLOURS[j]) / (COLOURS[i] - COLOURS[j])  # recovered from the pixels
        assert ym[i, i] == pytest.approx(lam, abs=1e-4) and ym[i, j] == pytest.approx(1 - lam, abs=1e-4)
        mixed_rows += 1
        lams.append(lam)
    assert np.ptp(lams) < 1e-4  # one weight for the whole batch (timm's mode "batch")
    assert mixed_rows == len(COLOURS)  # the reversed batch: no image paired with itself (even batch)


@pytest.mark.parametrize("key", [0, 1, 2, 3, 2**32 + 5])
def test_cutmix_label_weight_is_the_pasted_fraction(key: int):
    xm, ym = _mix("cutmix", key)
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
    for i in range(len(COLOURS)):
        own = np.isclose(xm[i, ..., 0], COLOURS[i]).mean()  # pixels still image i's
        assert ym[i, i] == pytest.approx(own, abs=1e-6)
        others = np.flatnonzero((ym[i] > 0) & (np.arange(len(COLOURS)) != i))
        assert len(others) <= 1
        if len(others):
            assert ym[i, others[0]] == pytest.approx(1 - own, abs=1e-6)


def test_with_both_each_batch_uses_one_of_them_half_the_time():
    x, y = _batch()
    mixing = mx.Mixing(mixup=0.4, cutmix=1.0, seed=0)
    kinds = []
    for key in range(60):
        xm, ym = mx.mix_batch(x, y, mx.batch_seed(0, tf.constant(key, tf.int64)), mixing)
        xm = xm.numpy()
        # CutMix leaves each image two colours (or one); mixup a single blended colour, never two.
        cut = any(np.ptp(xm[i]) > 1e-3 for i in range(len(COLOURS)))
        blended = any(not np.isclose(xm[i, 0, 0, 0], COLOURS).any() for i in range(len(COLOURS)))
        assert not (cut and blended)
        kinds.append(cut)
    assert 18 <= sum(kinds) <= 42  # p = 0.5 over 60 batches (binomial sd 3.9)


def test_keras_cutmix_label_weight_differs_from_its_pasted_fraction():
    """Backs the module docstring's reason (3) for not using keras.layers.CutMix."""
    import keras

    x, y = _batch(32, 32)
    layer = keras.layers.CutMix(factor=1.0, seed=3)
    worst = 0.0
    for _ in range(5):
        out = layer({"images": x, "labels": y}, training=True)
        xm, ym = np.asarray(out["images"]), np.asarray(out["labels"])
        for i in range(len(COLOURS)):
            if ym[i, i] < 1:
                worst = max(worst, abs(ym[i, i] - np.isclose(xm[i, ..., 0], COLOURS[i]).mean()))
    assert worst > 0.005


def test_same_key_same_batch_and_another_epoch_another():
    a, b = _mix("mixup", 5), _mix("mixup", 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = _mix("mixup", 2**32 + 5)  # epoch 1, batch 5
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(_mix("cutmix", 5, seed=0)[0], _mix("cutmix", 5, seed=1)[0])


def _batches(epoch_var, n_batches: int = 3, mixing=None) -> list[np.ndarray]:
    x, y = _batch()
    ds = tf.data.Dataset.from_tensor_slices((x, tf.argmax(y, -1, output_type=tf.int32)))
    ds = mx.label_vectors(ds.repeat(n_batches).batch(len(COLOURS)), len(COLOURS), mixing, epoch_var)
    return [yb.numpy() for _, yb in ds]


def test_pipeline_mixing_is_a_function_of_seed_epoch_and_batch():
    epoch = tf.Variable(0, dtype=tf.int64)
    mixing = mx.Mixing(mixup=0.4, cutmix=1.0, seed=0)
    first = _batches(epoch, mixing=mixing)
    again = _batches(epoch, mixing=mixing)
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])  # each batch its own draw
    epoch.assign(1)
    other = _batches(epoch, mixing=mixing)
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))
    epoch.assign(0)
    assert all(np.array_equal(a, b) for a, b in zip(first, _batches(epoch, mixing=mixing)))  # resume at epoch 0


def _source(root):
    from PIL import Image

    from tlkit.data import pipeline as tldata

    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((16, 16, 3), 40 + 80 * c + i, np.uint8)).save(root / cls / f"{i}.png")
    return tldata.resolve(str(root), val_split=0.4)


def test_unmixed_batches_are_one_hot_and_validation_is_never_mixed(tmp_path):
    plain = _batches(None)
    assert all(np.array_equal(b, np.eye(len(COLOURS), dtype=np.float32)) for b in plain)
    from tlkit.data import pipeline as tldata

    source = _source(tmp_path / "d")
    mixing = mx.Mixing(mixup=1.0, cutmix=1.0, seed=0)
    kw = dict(image_size=(16, 16), batch_size=4, label_classes=3, mixing=mixing)
    val = [y.numpy() for _, y in tldata.make_dataset(source, "val", training=False, **kw)]
    assert all(set(np.unique(y)) <= {0.0, 1.0} and (y.sum(1) == 1).all() for y in val)
    train = [y.numpy() for _, y in tldata.make_dataset(source, "train", training=True, augment=None, **kw)]
    assert any(((y > 0) & (y < 1)).any() for y in train)
    # --cache mem: the decoded images are cached, the mixing comes after (on every epoch's batches).
    cached = tldata.make_dataset(source, "train", training=True, cache="mem", **kw)
    assert any(((y.numpy() > 0) & (y.numpy() < 1)).any() for _, y in cached)
    default = [
        y.numpy() for _, y in tldata.make_dataset(source, "train", training=True, image_size=(16, 16), batch_size=4)
    ]
    assert all(y.dtype == np.int32 and y.ndim == 1 for y in default)  # the default path is unchanged


def test_label_smoothing_gives_the_loss_keras_documents():
    y_true = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    y_pred = np.array([[0.05, 0.95, 1e-7], [0.1, 0.8, 0.1]], np.float32)
    smoothed = y_true * 0.9 + 0.1 / 3  # Keras: y * (1 - eps) + eps / num_classes
    expected = float(np.mean(-(smoothed * np.log(y_pred / y_pred.sum(1, keepdims=True))).sum(1)))
    got = float(losses.loss(label_smoothing=0.1)(y_true, y_pred))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(losses.loss(label_smoothing=0.0, soft=True)(y_true, y_pred)) == pytest.approx(1.1769392, rel=1e-5)
    bce = losses.loss(multi_label=True, label_smoothing=0.2)
    p = np.array([[0.9, 0.2]], np.float32)
    t = np.array([[1.0, 0.0]], np.float32) * 0.8 + 0.1  # binary: y * (1 - eps) + eps / 2
    assert float(bce(np.array([[1.0, 0.0]], np.float32), p)) == pytest.approx(
        float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))), rel=1e-5
    )
    assert losses.loss() == "sparse_categorical_crossentropy"  # the default, unchanged
    assert [m.name for m in losses.metrics(10, soft=True)] == ["accuracy", "top5"]


def test_distributed_steps_take_label_vectors_and_an_empty_batch_counts_nothing():
    """The multi-worker loop's steps (here under the default strategy): categorical CE with the smoothing
    on float label vectors, class weights by the largest entry; a worker's empty batch (its padding)
    adds no loss and no count."""
    import keras

    from tlkit.finetune.distributed_train import _step_fns

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    strategy = tf.distribute.get_strategy()
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 4)), tf.float32)
    y = tf.constant([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.2, 0.8], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]], tf.float32)
    train_step, eval_step = _step_fns(model, strategy, 3, {0: 2.0, 1: 1.0, 2: 1.0}, label_smoothing=0.1)
    loss, correct, _, n, confusion = (np.asarray(v) for v in eval_step(x, y))
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction="sum")(y, model(x))
    assert float(n) == 5 and float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert confusion.sum() == 5 and confusion.sum(1).tolist() == [3.0, 1.0, 1.0]  # argmax rows (ties: first)
    # A worker's empty share of the last batch: one zero image of weight 0, counted nowhere.
    sums = [float(v) for v in eval_step(tf.zeros([0, 4]), tf.zeros([0, 3]))[:4]]
    assert sums == [0.0, 0.0, 0.0, 0.0]
    weighted = float(train_step(x, y)[0])  # class 0's weight 2 on rows whose largest entry is class 0
    assert weighted > float(expected)
