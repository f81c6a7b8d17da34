"""The bilinear-initialised transposed convolution equals bilinear upsampling (issue 22)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlkit.dense.upsample import bilinear_kernel, bilinear_upsampling


def _resize(x: np.ndarray, factor: int) -> np.ndarray:
    h, w = x.shape[1] * factor, x.shape[2] * factor
    return keras.ops.convert_to_numpy(keras.ops.image.resize(x, (h, w), interpolation="bilinear", antialias=False))


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 16, 32])
def test_transposed_convolution_equals_bilinear_resize_inside_the_border(factor):
    x = np.random.default_rng(factor).random((2, 7, 9, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(bilinear_upsampling(3, factor)(x))
    assert y.shape == (2, 7 * factor, 9 * factor, 3)
    m = factor // 2
    r = _resize(x, factor)
    h, w = y.shape[1], y.shape[2]
    np.testing.assert_allclose(y[:, m : h - m, m : w - m], r[:, m : h - m, m : w - m], atol=1e-5)
    # The border: zero padding where resizing repeats the edge, so the first row differs (for f >= 2).
    assert np.abs(y[:, 0] - r[:, 0]).max() > 1e-3


def test_channels_stay_apart_and_a_constant_map_stays_constant_inside():
    k = bilinear_kernel(4, 3)
    assert k.shape == (8, 8, 3, 3)
    assert np.count_nonzero(k[:, :, 0, 1]) == 0 and np.count_nonzero(k[:, :, 2, 0]) == 0
    assert k[:, :, 1, 1].sum() == pytest.approx(16.0)  # factor**2: each input pixel spreads over f x f outputs
    x = np.zeros((1, 6, 6, 3), "float32")
    x[..., 1] = 5.0
    y = keras.ops.convert_to_numpy(bilinear_upsampling(3, 4)(x))
    np.testing.assert_allclose(y[0, 2:-2, 2:-2, 1], 5.0, atol=1e-5)
    assert np.abs(y[..., [0, 2]]).max() == 0.0


def test_saved_and_loaded_with_its_initialiser(tmp_path):
    inp = keras.Input((5, 5, 2))
    model = keras.Model(inp, bilinear_upsampling(2, 2, name="up")(inp))
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((1, 5, 5, 2)).astype("float32")
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    assert back.get_layer("up").get_config()["kernel_initializer"]["config"] == {"factor": 2}


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        bilinear_kernel(0, 3)
    from tlkit.dense.upsample import BilinearUpsamplingInit

    with pytest.raises(ValueError, match="factor 2"):
        BilinearUpsamplingInit(2)((4, 4, 3, 2))
