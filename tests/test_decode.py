"""DCT-domain downscaling (tlkit.data.decode): the scale chosen per use, and camera-size photos
decoded at a reduced scale staying within the parity tolerance of the full decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.data import decode
from tlkit.data import resize as rs


def test_ratio_is_the_largest_scale_that_keeps_the_need():
    assert int(decode.jpeg_ratio(2250, 3000, (224, 224))) == 8  # 282x375 >= 224
    assert int(decode.jpeg_ratio(2250, 3000, (896, 896))) == 2  # 1125x1500; 563 < 896
    assert int(decode.jpeg_ratio(2250, 3000, (1126, 896))) == 1
    assert int(decode.jpeg_ratio(375, 500, decode.decode_need((224, 224)))) == 1  # small photos: full decode
    assert int(decode.jpeg_ratio(2250, 3000, decode.decode_need((224, 224), "crop"))) == 4  # 563 >= 517
    assert decode.decode_need((224, 224)) == (896, 896)
    assert decode.decode_need((224, 224), "crop") == (518, 518)
    assert decode.decode_need((224, 224), "scale") == (512, 512)


@pytest.fixture(scope="module")
def camera_photos(tmp_path_factory) -> list[Path]:
    import skimage.data

    root = tmp_path_factory.mktemp("camera")
    out = []
    for name in ("chelsea", "coffee", "astronaut"):
        p = root / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).resize((3000, 2250), Image.BICUBIC).save(p, "JPEG", quality=90)
        out.append(p)
    return out


def test_scaled_decode_of_camera_photos_is_within_the_parity_tolerance(camera_photos):
    import tlkit

    size = (224, 224)
    need = decode.decode_need(size)
    shapes = [tuple(decode.decode_file(tf.constant(str(p)), need).shape) for p in camera_photos]
    assert shapes == [(1125, 1500, 3)] * 3  # decoded at half size, not in full
    full = np.stack([rs.resize(decode.decode_file(tf.constant(str(p))), size).numpy() for p in camera_photos])
    fast = np.stack([rs.resize(decode.decode_file(tf.constant(str(p)), need), size).numpy() for p in camera_photos])
    diff = np.abs(full - fast)
    # The parity tests' tolerance (tests/test_export.py): max <= 2 levels, mean < 0.3. Measured: mean
    # 0.037..0.053, max 0.4..1.3.
    assert diff.max() <= 2 and diff.mean(axis=(1, 2, 3)).max() < 0.1
    model = tlkit.build("efficientnet_lite0", weights="imagenet")
    a, b = model.predict(full, verbose=0), model.predict(fast, verbose=0)
    assert list(a.argmax(1)) == list(b.argmax(1))
    # Probabilities (softmax output): measured within 0.0064 of each other.
    assert np.abs(a - b).max() < 0.02
    # One step coarser (r=4, 2.5x the target) is measurably outside the tolerance: the margin matters.
    coarse = np.stack(
        [rs.resize(decode.decode_file(tf.constant(str(p)), (448, 448)), size).numpy() for p in camera_photos]
    )
    assert np.abs(full - coarse).mean() > 0.3


def test_pipeline_decodes_camera_photos_at_the_reduced_scale(camera_photos):
    from tlkit.data import pipeline as tldata

    size = (224, 224)
    got = np.concatenate(
        list(tldata.images_dataset([str(p) for p in camera_photos], image_size=size, batch_size=2).as_numpy_iterator())
    )
    want = np.stack(
        [
            rs.resize(decode.decode_file(tf.constant(str(p)), decode.decode_need(size)), size).numpy()
            for p in camera_photos
        ]
    )
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["plain"])
def test_serving_graph_decodes_camera_photos_within_the_parity_tolerance(camera_photos, mode):
    from tlkit.export import serving_decode

    size = (224, 224)
    blobs = [p.read_bytes() for p in camera_photos[:2]]
    got = serving_decode.decode_images(tf.constant(blobs), size, mode).numpy()  # in parallel, at a DCT scale
    want = np.stack(
        [rs.apply(tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_ACCURATE"), size, mode).numpy() for b in blobs]
    )
    diff = np.abs(got - want)
    assert diff.max() <= 2 and diff.mean() < 0.3
    assert int(decode.jpeg_ratio(2250, 3000, decode.serving_need(size, mode))) == 2  # it did take the short cut
    assert decode.serving_need(size, "crop") is None  # whole-pixel centre crops are not scale-invariant
