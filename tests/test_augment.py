"""Seeded augmentation: shapes, value ranges, determinism per seed, in the ops and in the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.data import augment, resize
from tlkit.data import pipeline as data


def _image(h: int = 20, w: int = 30, seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float32))


@pytest.mark.parametrize("mode", ["crop", "scale"])
@pytest.mark.parametrize("hw", [(20, 30), (8, 8), (300, 200)])
def test_shapes_and_range(mode, hw):
    out = augment.augment_image(_image(*hw), (24, 16), tf.constant([3, 4]), mode=mode)
    assert out.shape == (24, 16, 3) and out.dtype == tf.float32
    x = out.numpy()
    assert x.min() >= 0 and x.max() <= 255 and x.std() > 0


@pytest.mark.parametrize("mode", ["crop", "scale"])
def test_same_seed_same_image_other_seed_other_image(mode):
    img = _image()
    a = augment.augment_image(img, (16, 16), tf.constant([1, 2]), mode=mode).numpy()
    b = augment.augment_image(img, (16, 16), tf.constant([1, 2]), mode=mode).numpy()
    np.testing.assert_array_equal(a, b)
    others = [augment.augment_image(img, (16, 16), tf.constant([1, s]), mode=mode).numpy() for s in range(3, 7)]
    assert all(not np.array_equal(a, o) for o in others)


def test_crop_of_full_area_is_a_resize():
    img = _image(12, 12)
    out = resize.random_resized_crop(img, (6, 6), tf.constant([0, 1]), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(out.numpy(), resize.resize(img, (6, 6)).numpy(), atol=1e-4)


def test_scale_jitter_keeps_a_constant_image_constant_and_varies_scale():
    flat = tf.fill([10, 40, 3], 77.0)
    out = resize.scale_jitter(flat, (8, 8), tf.constant([5, 5]))
    np.testing.assert_allclose(out.numpy(), 77.0, atol=1e-3)
    # A left-to-right ramp: the crop's spread of values shrinks as the random scale S grows.
    ramp = tf.tile(tf.reshape(tf.linspace(0.0, 255.0, 40), [1, 40, 1]), [10, 1, 3])
    spreads = {
        round(float(np.ptp(resize.scale_jitter(ramp, (8, 8), tf.constant([0, s])).numpy())), 1) for s in range(8)
    }
    assert len(spreads) > 2


def test_flip_and_colour_jitter():
    img = _image(6, 6)
    flips = [augment.random_flip(img, tf.constant([0, s])).numpy() for s in range(8)]
    assert any(np.array_equal(f, img.numpy()[:, ::-1]) for f in flips)
    assert any(np.array_equal(f, img.numpy()) for f in flips)
    col = augment.color_jitter(img, tf.constant([9, 9])).numpy()
    assert col.min() >= 0 and col.max() <= 255 and not np.allclose(col, img.numpy())
    same = augment.color_jitter(img, tf.constant([9, 9]), brightness=0, contrast=0, saturation=0).numpy()
    np.testing.assert_allclose(same, img.numpy(), atol=1e-3)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        augment.augment_image(_image(), (8, 8), tf.constant([0, 0]), mode="mixup")


@pytest.fixture()
def source(tmp_path: Path):
    for cls in ("a", "b"):
        for i in range(6):
            p = tmp_path / "d" / cls / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            arr = np.random.default_rng((0 if cls == "a" else 100) + i).integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(p)
    return data.resolve(str(tmp_path / "d"), val_split=0.0)


@pytest.mark.parametrize("mode", ["crop", "scale"])
def test_pipeline_augmentation_is_seeded_and_new_each_epoch(source, mode):
    def epochs(seed: int) -> list[np.ndarray]:
        ds = data.make_dataset(
            source, "train", image_size=(12, 12), batch_size=12, training=True, augment=mode, seed=seed
        )
        return [next(iter(ds))[0].numpy() for _ in range(2)]

    a, b = epochs(5), epochs(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1]), "a new epoch gives new augmentations"
    assert not np.array_equal(a[0], epochs(6)[0])
    assert a[0].shape == (12, 12, 12, 3) and a[0].min() >= 0 and a[0].max() <= 255


def test_pipeline_without_augmentation_only_resizes(source):
    ds = data.make_dataset(source, "train", image_size=(10, 12), batch_size=12, training=True, augment=None, seed=0)
    x, y = next(iter(ds))
    ev = data.make_dataset(source, "train", image_size=(10, 12), batch_size=12, training=False)
    xe, ye = next(iter(ev))
    # same images, shuffled: compare as sorted sets of per-image sums
    np.testing.assert_allclose(
        np.sort(x.numpy().sum(axis=(1, 2, 3))), np.sort(xe.numpy().sum(axis=(1, 2, 3))), rtol=1e-5
    )
    assert sorted(y.numpy().tolist()) == sorted(ye.numpy().tolist())
