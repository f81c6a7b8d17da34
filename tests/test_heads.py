"""Head swap, block grouping, freezing: head-only training leaves the body bit-identical."""

import importlib

import keras
import numpy as np
import pytest

import tlkit
from tlkit.finetune import heads, train


def _snapshot(layer):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights}


def test_resnet50_blocks_follow_the_stages():
    base = tlkit.build("resnet50", include_top=False, input_shape=(64, 64, 3))
    blocks = heads.layer_blocks(base)
    assert [k for k, _ in blocks] == [
        f"conv{s}_block{i}" for s, n in ((2, 3), (3, 4), (4, 6), (5, 3)) for i in range(1, n + 1)
    ]
    # the stem (conv1_conv, conv1_bn) joins the first block; each bottleneck has 3 convs (+1 projection)
    assert len([l for l in blocks[1][1] if isinstance(l, keras.layers.Conv2D)]) == 3
    assert len([l for l in blocks[0][1] if isinstance(l, keras.layers.Conv2D)]) == 5


def test_inception_convs_join_the_module_their_mixed_layer_closes():
    base = tlkit.build("inception_v3", include_top=False, input_shape=(75, 75, 3))
    names = [k for k, _ in heads.layer_blocks(base)]
    assert names == [f"mixed{i}" for i in range(11)]


@pytest.fixture()
def tiny_classifier():
    keras.utils.set_random_seed(0)
    model = heads.build_classifier("mobilenet_v2", num_classes=3, weights=None, input_size=(32, 32))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 16).astype("int32")
    return model, x, y


def test_head_only_training_leaves_the_base_bit_identical(tiny_classifier):
    model, x, y = tiny_classifier
    base = heads.get_base(model)
    before = _snapshot(base)
    head_before = _snapshot(model.get_layer("predictions"))
    train.compile_model(model, train.StageConfig(stage=1, epochs=1, lr=1e-2), 3)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = _snapshot(base)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before), "a frozen base weight changed"
    moving = [k for k in before if "moving" in k]
    assert moving, "expected BatchNorm moving statistics in the base"
    head_after = _snapshot(model.get_layer("predictions"))
    assert any(not np.array_equal(head_before[k], head_after[k]) for k in head_before)


def test_stage2_changes_exactly_the_unfrozen_blocks(tiny_classifier):
    model, x, y = tiny_classifier
    base = heads.get_base(model)
    unfrozen = heads.unfreeze_top(model, 2)
    assert unfrozen == ["block_16", "top"]
    chosen = {
        l.name
        for k, ls in heads.layer_blocks(base)
        if k in unfrozen
        for l in ls
        if not isinstance(l, keras.layers.BatchNormalization)
    }
    before = {l.name: _snapshot(l) for l in base.layers if l.weights}
    train.compile_model(model, train.StageConfig(stage=2, epochs=1, lr=1e-2), 3)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for layer in base.layers:
        if not layer.weights:
            continue
        after = _snapshot(layer)
        same = all(np.array_equal(before[layer.name][k], after[k]) for k in after)
        if layer.name in chosen:
            assert not same, f"{layer.name} was unfrozen but did not change"
        else:
            assert same, f"{layer.name} changed but was not unfrozen"
    # BatchNorm stayed in inference mode: no moving statistic moved anywhere
    assert all(isinstance(l, keras.layers.BatchNormalization) is False or not l.trainable for l in base.layers)


def test_unfreeze_all_and_zero(tiny_classifier):
    model, _, _ = tiny_classifier
    base = heads.get_base(model)
    assert heads.unfreeze_top(model, 0) == []
    assert not model.get_layer("base").trainable_weights
    n_blocks = len(heads.layer_blocks(base))
    assert len(heads.unfreeze_top(model, "all")) == n_blocks
    with pytest.raises(ValueError, match="unfreeze"):
        heads.unfreeze_top(model, -1)


KERAS_PREPROCESS = {
    "resnet50": ("resnet", 64),
    "resnet50v2": ("resnet_v2", 64),
    "vgg16": ("vgg16", 64),
    "mobilenet_v2": ("mobilenet_v2", 64),
    "densenet121": ("densenet", 64),
    "inception_v3": ("inception_v3", 75),
    "xception": ("xception", 71),
    "efficientnet_b0": ("efficientnet", 64),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KERAS_PREPROCESS))
def test_preprocessing_is_applied_exactly_once(name):
    module, size = KERAS_PREPROCESS[name]
    keras.utils.set_random_seed(1)
    body = tlkit.build(name, include_top=False, input_shape=(size, size, 3))
    model = heads.build_classifier(name, num_classes=2, input_size=(size, size), base_model=body)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    x = np.random.default_rng(2).uniform(0, 255, (2, size, size, 3)).astype("float32")
    preprocess_input = importlib.import_module(f"keras.applications.{module}").preprocess_input
    want = np.asarray(keras.ops.mean(body(preprocess_input(x.copy()), training=False), axis=(1, 2)))
    got = np.asarray(features(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    keras.backend.clear_session()


def test_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        heads.build_classifier("mobilenet_v2", num_classes=1, weights=None, input_size=(32, 32))
