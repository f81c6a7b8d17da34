"""keras.applications bases behind the registry: Keras' own architectures, counted both ways."""

import gc

import keras
import numpy as np
import pytest

import tlkit
from tlkit.inspection import parameter_counts

APPS = [s.name for s in tlkit.list_models(family="keras_applications")]
# Keras count_params() (with BatchNorm/Normalization statistics), from Keras' applications table.
KERAS_TOTALS = {"resnet50": 25_636_712, "vgg16": 138_357_544, "densenet121": 8_062_504,
                "mobilenet_v2": 3_538_984, "inception_v3": 23_851_784, "efficientnet_b0": 5_330_571}


@pytest.mark.parametrize("name", APPS)
def test_full_size_parameter_counts(name):
    spec = tlkit.get_spec(name)
    model = tlkit.build(name)  # no forward pass: counting needs only the variables
    counts = parameter_counts(model)
    assert counts["paper"] == spec.params, (name, counts)
    if name in KERAS_TOTALS:
        assert counts["keras"] == KERAS_TOTALS[name]
    for alias, layer in spec.layers.items():
        if not layer.startswith("type:"):
            model.get_layer(layer)  # every alias names a real layer
    del model
    keras.backend.clear_session()
    gc.collect()


SMALLEST = {"inception_v3": 75, "xception": 71}  # Keras' own minimum input sizes


@pytest.mark.parametrize("name", APPS)
def test_small_input_forward(name):
    size = SMALLEST.get(name, 64)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    if not tlkit.get_spec(name).fixed_input:
        model = tlkit.build(name, input_shape=(size, size, 3), num_classes=5)
        y = np.asarray(model(x, training=False))
        assert y.shape == (2, 5)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    body = tlkit.build(name, input_shape=(size, size, 3), include_top=False)
    assert np.asarray(body(x, training=False)).shape[0] == 2
    want = {"inception_v3": (1, 1), "xception": (3, 3)}.get(name, (2, 2))  # stride 32, valid-padded stems
    assert body.output_shape[1:3] == want
    keras.backend.clear_session()
