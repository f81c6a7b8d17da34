"""RandAugment (``--randaugment N,M``): PIL's op definitions, 0..255 floats, seeded per element and epoch,
training only, in every branch of the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from tlkit.data import augment
from tlkit.data import pipeline as data
from tlkit.data import randaugment as ra
from tlkit.errors import ConfigError
from tlkit.finetune.config import parse_randaugment


def _image(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float32)


def _op(name: str, x: np.ndarray, magnitude: float, sign: float = 1.0) -> np.ndarray:
    branches = ra._op_branches(tf.constant(x), magnitude / ra.MAX_MAGNITUDE, tf.constant(sign))
    return branches[ra.OPS.index(name)]().numpy()


@pytest.mark.parametrize(
    "name,reference",
    [
        ("equalize", lambda im, f: ImageOps.equalize(im)),
        ("posterize", lambda im, f: ImageOps.posterize(im, 7)),  # M=9: 8 - round(4 * 0.3) bits
        ("solarize", lambda im, f: ImageOps.solarize(im, 179)),  # M=9: pixels above 178.5 inverted
        ("autocontrast", lambda im, f: ImageOps.autocontrast(im)),
        ("color", lambda im, f: ImageEnhance.Color(im).enhance(f)),
        ("contrast", lambda im, f: ImageEnhance.Contrast(im).enhance(f)),
        ("brightness", lambda im, f: ImageEnhance.Brightness(im).enhance(f)),
        ("sharpness", lambda im, f: ImageEnhance.Sharpness(im).enhance(f)),
    ],
)
def test_pixel_ops_match_pil_at_magnitude_9(name, reference):
    x = _image()
    x[:4] = x[:4] * 0.3 + 60  # a skewed histogram, so autocontrast and equalize have work to do
    x = np.round(x)
    want = np.asarray(reference(Image.fromarray(x.astype(np.uint8)), 1 + 0.9 * 9 / 30), np.float32)
    got = _op(name, x, 9)
    # PIL rounds to uint8 (and its grey and mean too): about a level, more for autocontrast's truncation.
    exact = name in ("equalize", "posterize", "solarize")
    np.testing.assert_allclose(got, want, atol=0 if exact else 1.5 + (name == "autocontrast"))
    assert not np.array_equal(got, x)


def test_geometric_ops_move_by_their_magnitude():
    x = np.full((31, 31, 3), ra.FILL, np.float32)  # on the fill's grey, nothing comes in at the borders
    x[15, 15] = 255  # one white pixel in the middle

    def bright(y: np.ndarray) -> list[list[int]]:  # where the white pixel went (bilinear: maybe two pixels)
        return np.argwhere(y[..., 0] > 160).tolist()

    assert bright(_op("translate_x", x, 30)) == [[15, 1]]  # 150/331 of 31 = 14.05 pixels
    assert bright(_op("translate_y", x, 30, -1.0)) == [[29, 15]]
    assert bright(_op("translate_x", x, 9)) == [[15, 11]]  # 4.2 pixels at M=9
    assert bright(_op("shear_x", x, 30)) == [[15, 10], [15, 11]]  # x + 0.3 * y: 4.5 pixels on row 15
    assert bright(_op("shear_y", x, 30)) == [[10, 15], [11, 15]]
    assert bright(_op("rotate", x, 30)) == [[15, 15]]  # the centre stays
    off = np.full_like(x, ra.FILL)
    off[15, 25] = 255  # 10 pixels right of the centre: 30 degrees takes it 5 up or down, 1.3 left
    assert np.unravel_index(np.argmax(_op("rotate", off, 30)[..., 0]), (31, 31)) in ((10, 24), (20, 24))
    assert _op("translate_x", np.zeros_like(x), 30)[0, 30, 0] == ra.FILL  # what comes in is grey


@pytest.mark.parametrize("magnitude", [9, 30])
def test_every_op_keeps_shape_dtype_and_range(magnitude):
    x = tf.constant(_image(17, 23))
    for name in ra.OPS:
        for s in range(2):
            out = ra.rand_augment(x, tf.constant([s, 7]), 2, magnitude, ops=(name,))
            assert out.shape == (17, 23, 3) and out.dtype == tf.float32, name
            assert 0 <= out.numpy().min() and out.numpy().max() <= 255, name


def test_magnitude_0_is_the_identity_but_for_autocontrast_and_equalize():
    x = tf.constant(_image())
    ops = tuple(o for o in ra.OPS if o not in ("autocontrast", "equalize"))
    for s in range(20):
        np.testing.assert_array_equal(ra.rand_augment(x, tf.constant([s, 1]), 3, 0, ops=ops).numpy(), x.numpy())


def test_same_seed_same_image_other_seed_other_image():
    x = tf.constant(_image())
    a = ra.rand_augment(x, tf.constant([1, 2]), 2, 9).numpy()
    np.testing.assert_array_equal(a, ra.rand_augment(x, tf.constant([1, 2]), 2, 9).numpy())
    assert sum(np.array_equal(a, ra.rand_augment(x, tf.constant([1, s]), 2, 9).numpy()) for s in range(3, 13)) <= 1


def test_randaugment_replaces_the_colour_jitter():
    grey = tf.fill([16, 16, 3], 100.0)  # every op at M=0 keeps a flat grey image as it is
    seed = tf.constant([4, 2])
    no_jitter = augment.augment_image(grey, (12, 12), seed, color=False).numpy()
    assert not np.array_equal(augment.augment_image(grey, (12, 12), seed).numpy(), no_jitter)
    for n in (1, 2, 4):
        out = augment.augment_image(grey, (12, 12), seed, randaugment=(n, 0)).numpy()
        np.testing.assert_array_equal(out, no_jitter)


def test_parse():
    assert parse_randaugment("2,9") == (2, 9) and parse_randaugment(None) is None
    for bad in ("2", "2,40", "0,9", "2,-1", "a,b", "2,9,1", "2.5,9"):
        with pytest.raises(ConfigError, match="--randaugment"):
            parse_randaugment(bad)


@pytest.fixture()
def source(tmp_path: Path):
    for cls in ("a", "b"):
        for i in range(6):
            p = tmp_path / "d" / cls / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_image(20, 24, (0 if cls == "a" else 100) + i).astype(np.uint8)).save(p)
    return data.resolve(str(tmp_path / "d"), val_split=0.5)


def _dataset(source, split="train", **kw):
    return data.make_dataset(source, split, image_size=(12, 12), batch_size=12, seed=3, **kw)


def _batch(ds) -> np.ndarray:
    return next(iter(ds))[0].numpy()


def test_pipeline_per_seed_epoch_and_element_in_every_branch(source):
    epoch = data.epoch_variable()
    keyed = _dataset(source, training=True, epoch=epoch, randaugment=(2, 9))
    first = _batch(keyed)
    assert first.dtype == np.float32 and first.shape[1:] == (12, 12, 3) and 0 <= first.min() and first.max() <= 255
    np.testing.assert_array_equal(first, _batch(keyed))  # same (seed, epoch, element): same images
    epoch.assign(1)
    assert not np.array_equal(first, _batch(keyed))  # another epoch
    epoch.assign(0)
    np.testing.assert_array_equal(first, _batch(keyed))  # back at epoch 0: replayed
    assert not np.array_equal(first, _batch(_dataset(source, training=True, epoch=epoch)))  # it changes the images
    # The non-keyed branch (prepared records, TFDS) and the --cache branch apply it too.
    for extra in ({}, {"cache": "mem"}):
        with_ra = _batch(_dataset(source, training=True, randaugment=(2, 9), **extra))
        assert not np.array_equal(with_ra, _batch(_dataset(source, training=True, **extra))), extra


def test_validation_data_are_byte_identical_with_randaugment(source):
    for extra in ({}, {"cache": "mem"}):
        plain = _batch(_dataset(source, "val", training=False, **extra))
        other = _batch(_dataset(source, "val", training=False, randaugment=(3, 30), **extra))
        np.testing.assert_array_equal(plain, other)


def test_two_workers_shares_are_the_one_process_epoch(source):
    from tlkit.data.sharding import Shard

    epoch = data.epoch_variable()
    epoch.assign(2)
    kw = dict(training=True, epoch=epoch, randaugment=(2, 9))

    def images(ds) -> list[bytes]:
        return sorted(x.tobytes() for xs, _ in ds for x in xs.numpy())

    one = images(data.make_dataset(source, "train", image_size=(12, 12), batch_size=4, seed=3, **kw))
    shares = [
        data.make_dataset(source, "train", image_size=(12, 12), batch_size=4, seed=3, shard=Shard(i, 2), **kw)
        for i in range(2)
    ]
    assert len(one) == 6 and sorted(images(shares[0]) + images(shares[1])) == one
