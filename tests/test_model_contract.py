"""The model contract, written once and parametrized over every registered model:

* it builds at a small input it accepts, with the output shape it promises;
* a save/load round trip through a ``.keras`` file gives equal outputs;
* at full size, the trainable parameters equal the spec's published count, and every
  layer alias of the spec names a real layer;
* a fixed-input head refuses other sizes, naming the model;
* the spec's unfreeze block regex groups the layers as heads' generic conventions do
  (the per-model fact moved into the spec without changing what ``--unfreeze N`` means).

Family-specific facts (layouts, block prefixes, arithmetic) stay in the family's tests.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlkit
from tlkit.errors import ModelError
from tlkit.finetune.heads import layer_blocks, spec_block_pattern
from tlkit.inspection import parameter_counts

SPECS = tlkit.list_models()
# Full-size builds above this hold 0.2-0.6 GB of weights and take seconds: the slow tier.
BIG = 40_000_000
# A .keras round trip writes and reads every weight: above this it takes several seconds.
BIG_ROUND_TRIP = 20_000_000
# Keras count_params() (with BatchNorm/Normalization statistics), from Keras' applications table.
KERAS_TOTALS = {
    "resnet50": 25_636_712,
    "vgg16": 138_357_544,
    "densenet121": 8_062_504,
    "mobilenet_v2": 3_538_984,
    "inception_v3": 23_851_784,
    "efficientnet_b0": 5_330_571,
}

pytestmark = pytest.mark.usefixtures("free_models")


# Few weights but thousands of layers: one build takes ~25 s on 2 cores, so its count is in the
# slow tier.
DEEP = {"resnet1202_cifar"}
# Deeper copies of a round-tripped model (same builder, same layer types; ResNet-110's .keras
# round trip alone takes ~15 s): resnet20_cifar's round trip covers them, and
# tests/test_models_notes.py loads a graph deeper than Python's recursion limit.
ROUND_TRIPPED_AS = {
    "resnet56_cifar": "resnet20_cifar",
    "resnet110_cifar": "resnet20_cifar",
    **dict.fromkeys(DEEP, "resnet20_cifar"),
}


def _params(specs, *, big=BIG):
    return [
        pytest.param(s.name, marks=pytest.mark.slow) if (s.params or 0) > big or s.name in DEEP else s.name
        for s in specs
    ]


def _outputs(y):
    return [keras.ops.convert_to_numpy(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


def test_every_model_is_covered():
    assert len(SPECS) >= 48
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "vgg16", "lenet5"} <= {
        s.name for s in SPECS
    }
    # Every model whose round trip is another's names one that is registered and round-tripped.
    assert {tlkit.get_spec(v).name for v in ROUND_TRIPPED_AS.values()}.isdisjoint(ROUND_TRIPPED_AS)


@pytest.mark.parametrize("name", _params([s for s in SPECS if s.name not in ROUND_TRIPPED_AS], big=BIG_ROUND_TRIP))
def test_small_build_and_round_trip(name, tmp_path):
    spec = tlkit.get_spec(name)
    size = max(spec.min_input, 32)
    # A fixed head only takes its own size: its small form is the convolutional body.
    include_top = not spec.fixed_input
    shape = (size, size, spec.input_shape[2])
    model = tlkit.build(name, input_shape=shape, num_classes=5, include_top=include_top)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    before = _outputs(model(x, training=False))
    if include_top:
        assert before[0].shape == (2, 5)
        np.testing.assert_allclose(before[0].sum(axis=1), 1.0, rtol=1e-4)  # softmax by default
    else:
        assert before[0].ndim == 4 and before[0].shape[0] == 2
    assert all(np.all(np.isfinite(y)) for y in before)
    blocks = layer_blocks(model, spec_block_pattern(name))
    assert spec.blocks and len(blocks) >= 1
    assert [(k, [l.name for l in ls]) for k, ls in blocks] == [
        (k, [l.name for l in ls]) for k, ls in layer_blocks(model)
    ]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    for a, b in zip(_outputs(loaded(x, training=False)), before):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", _params([s for s in SPECS if s.params is not None]))
def test_full_size_parameter_count_and_aliases(name):
    spec = tlkit.get_spec(name)
    model = tlkit.build(name)  # the spec's size and classes; no forward pass
    counts = parameter_counts(model)
    assert counts["paper"] == spec.params, (name, counts)
    if name in KERAS_TOTALS:
        assert counts["keras"] == KERAS_TOTALS[name]
    outputs = model.outputs if isinstance(model.output, (list, tuple)) else [model.output]
    assert tuple(outputs[0].shape) == (None, spec.num_classes)
    for alias, layer in spec.layers.items():
        if not layer.startswith("type:"):
            model.get_layer(layer), alias  # every alias names a real layer


@pytest.mark.parametrize("name", [s.name for s in SPECS if s.fixed_input])
def test_fixed_input_head_refuses_other_sizes(name):
    spec = tlkit.get_spec(name)
    h = spec.input_shape[0]
    with pytest.raises(ModelError, match=rf"{name} has a fully connected head that fixes its input to {h}x{h}"):
        tlkit.build(name, input_shape=(h + 32, h + 32, spec.input_shape[2]))
