"""keras.applications bases behind the registry: Keras' own architectures, counted both ways."""

import keras
import numpy as np
import pytest

import tlkit

# Inception-ResNet-v2 (780 layers, ~12 s a build on 2 cores) is left to tests/test_model_contract.py.
APPS = [s.name for s in tlkit.list_models(family="keras_applications") if s.name != "inception_resnet_v2"]
# Full-size parameter counts (paper form and Keras' totals): tests/test_model_contract.py.


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
