"""tlkit.data.resize: the named policies, one interpolation, eager == in tf.data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tlkit.data import resize
from tlkit.errors import ConfigError


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_plain_is_antialiased_bilinear_unrounded():
    img = _image(300, 451)
    out = resize.resize_numpy(img, (224, 224), "plain")
    want = tf.image.resize(tf.cast(img, tf.float32), (224, 224), method="bilinear", antialias=True).numpy()
    np.testing.assert_array_equal(out, want)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 255
    assert not np.array_equal(out, np.round(out))  # left unrounded, as the data pipeline always did


def test_crop_is_the_centre_square_of_87_5_percent_of_the_shorter_side():
    img = _image(300, 451)
    side = round(300 * 0.875)  # 262
    top, left = (300 - side) // 2, (451 - side) // 2
    want = resize.resize_numpy(img[top : top + side, left : left + side], (224, 224), "plain")
    np.testing.assert_array_equal(resize.resize_numpy(img, (224, 224), "crop"), want)
    assert np.abs(resize.resize_numpy(img, (224, 224), "plain") - want).mean() > 10


def test_the_policy_runs_the_same_in_a_tf_data_map_as_eagerly():
    img = _image(60, 80)
    ds = tf.data.Dataset.from_tensors(tf.constant(img)).map(lambda x: resize.apply(x, (32, 40), "crop"))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), resize.resize_numpy(img, (32, 40), "crop"))


@pytest.mark.parametrize(
    ("hw", "mode", "want"),
    [((300, 451), "shorter", (224, 337)), ((451, 300), "shorter", (337, 224)), ((300, 451), "square", (224, 224))],
)
def test_dense_scales(hw, mode, want):
    assert resize.scaled_size(*hw, 224, mode) == want
    assert tuple(resize.to_scale(_image(*hw), 224, mode).shape) == (*want, 3)


def test_an_unknown_policy_names_what_is_accepted_and_the_flag():
    with pytest.raises(ConfigError, match=r"'dataset' is not one of crop, plain \(--resize\)"):
        resize.apply(_image(8, 8), (4, 4), "dataset")
    with pytest.raises(ConfigError, match="resize must be one of"):
        resize.scaled_size(8, 8, 4, "bicubic")
