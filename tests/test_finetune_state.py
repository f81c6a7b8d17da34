"""No hidden global state: a library finetune restores process settings and leaves the caller's objects alone."""

import dataclasses
import random
from typing import ClassVar

import keras
import numpy as np
from test_pipeline import _shapes_folder

import tlkit
from tlkit import _keras_compat
from tlkit.finetune import heads
from tlkit.finetune.pipeline import FinetuneConfig, finetune


class _Observe(keras.callbacks.Callback):
    """What the process settings were while the run trained (so the test sees them change and come back)."""

    seen: ClassVar[list] = []

    def on_train_batch_end(self, batch, logs=None):
        _Observe.seen.append((keras.mixed_precision.global_policy().name, _keras_compat.op_determinism()))


def test_finetune_restores_policy_determinism_random_state_and_leaves_the_config(tmp_path):
    data = _shapes_folder(tmp_path / "shapes", n=6)
    cfg = FinetuneConfig(
        data=str(data),
        base="cifar_example",
        weights=None,
        runs_dir=str(tmp_path / "runs"),
        input_size=(32, 32),
        batch_size=8,
        epochs=1,
        finetune_epochs=0,
        augment=None,
        mixed_precision="off",
        deterministic=True,
    )
    before_cfg = dataclasses.asdict(cfg)
    was_determinism = _keras_compat.op_determinism()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # the caller's own choice
    _keras_compat.set_op_determinism(False)
    random.seed(123)
    np.random.seed(123)
    want_py, want_np = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    try:
        metrics = finetune(cfg, quiet=True, callbacks=[_Observe()])
        after = (keras.mixed_precision.global_policy().name, _keras_compat.op_determinism())
    finally:
        keras.mixed_precision.set_global_policy("float32")
        _keras_compat.set_op_determinism(was_determinism)
    assert metrics["count"] > 0
    assert ("float32", True) in _Observe.seen  # the run did change both settings while it trained
    assert after == ("mixed_bfloat16", False)
    assert (random.random(), np.random.random()) == (want_py, want_np)  # the caller's random streams continue
    assert dataclasses.asdict(cfg) == before_cfg  # input_size/finetune_lr were filled in on a copy
    assert cfg.finetune_lr is None


def test_build_classifier_leaves_the_callers_base_as_it_was():
    keras.utils.set_random_seed(0)
    body = tlkit.build("mobilenet_v2", include_top=False, input_shape=(32, 32, 3))
    name, trainable = body.name, [w.trainable for w in body.layers]
    weights = [w.copy() for w in body.get_weights()]
    model = heads.build_classifier("mobilenet_v2", num_classes=3, input_size=(32, 32), base_model=body)
    heads.unfreeze_top(model, "all")
    assert body.name == name != heads.BASE_NAME
    assert [w.trainable for w in body.layers] == trainable
    assert heads.get_base(model) is not body and heads.get_base(model).name == heads.BASE_NAME
    got = heads.get_base(model).get_weights()
    assert len(got) == len(weights) and all(np.array_equal(a, b) for a, b in zip(got, weights))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(heads.get_base(model)(x, training=False), body(x, training=False), atol=1e-6)
    keras.backend.clear_session()
