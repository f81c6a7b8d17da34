"""EXIF orientation and phone formats in every decoder: PIL's path, the input pipeline's graph and
the serving graph turn a tagged JPEG upright exactly as ``PIL.ImageOps.exif_transpose`` shows it;
WebP is decoded (and its header read) wherever JPEG is; HEIC goes through pillow-heif or is named.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps
from skimage import data

from tlkit.data import images, orientation
from tlkit.data.decode import decode_file
from tlkit.errors import ImageError
from tlkit.export import serving_decode as sd

ORIENTATIONS = range(1, 9)


def tagged_jpeg(upright: np.ndarray, value: int, **kw) -> bytes:
    """``upright`` stored as a camera stores it under EXIF orientation ``value`` (pixels turned the other way)."""
    exif = Image.Exif()
    exif[0x0112] = value
    buf = io.BytesIO()
    Image.fromarray(orientation.stored_numpy(upright, value)).save(buf, "JPEG", quality=92, exif=exif.tobytes(), **kw)
    return buf.getvalue()


def viewer(data_: bytes) -> np.ndarray:
    """What a photo viewer shows: PIL's exif_transpose of the decoded file."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data_))).convert("RGB"))


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    return data.chelsea()  # 300 x 451: not square, so a missed turn changes the shape


@pytest.mark.parametrize("value", ORIENTATIONS)
def test_every_decoder_shows_what_exif_transpose_shows(cat, value, tmp_path):
    blob = tagged_jpeg(cat, value)
    path = tmp_path / f"o{value}.jpg"
    path.write_bytes(blob)
    want = viewer(blob)
    assert want.shape == cat.shape  # the viewer's picture is the upright cat
    assert orientation.jpeg_orientation(blob) == value
    assert int(orientation.tf_jpeg_orientation(tf.constant(blob))) == value
    np.testing.assert_array_equal(images.load_rgb(path), want)  # predict, dense-eval, preflight
    np.testing.assert_array_equal(decode_file(tf.constant(str(path))).numpy(), want)  # the input pipeline
    size = (96, 64)  # not square: the serving graph's resize follows the upright shape
    served = sd.decode_images(tf.constant([blob]), size, "plain").numpy()[0]
    ref = tf.image.resize(want.astype(np.float32), size, antialias=True).numpy()
    assert np.abs(served - ref).max() <= 1e-3


def test_preflight_reads_the_upright_size_and_the_tag(cat, tmp_path):
    from tlkit.data.preflight import inspect_file, inspect_header

    path = tmp_path / "six.jpg"
    path.write_bytes(tagged_jpeg(cat, 6))
    for info in (inspect_header(str(path)), inspect_file(str(path))):
        assert (info["h"], info["w"], info["orientation"]) == (300, 451, 6)


def test_dct_scaled_decode_of_a_turned_photo_keeps_the_upright_need(cat, tmp_path):
    """A 1200x1804 photo stored sideways (tag 6): the DCT scale is chosen on the upright
    height and width, so a tall, narrow target is still decoded at >= the need."""
    from tlkit.data.decode import decode_jpeg_scaled

    big = np.asarray(Image.fromarray(cat).resize((1804, 1200)))
    blob = tagged_jpeg(big, 6)
    # Upright 1200 x 1804: r=2 gives 600 x 902, enough for (600, 900). Judged on the stored
    # 1804 x 1200, r=2 would give a width of 600 < 900, and the decode would stay at r=1.
    need = (600, 900)
    out = decode_jpeg_scaled(tf.constant(blob), need).numpy()
    assert out.shape[:2] == (600, 902)  # r=2 of the upright 1200 x 1804
    assert out.shape[0] >= need[0] and out.shape[1] >= need[1]
    full = viewer(blob)
    small = tf.image.resize(out.astype(np.float32), (60, 90), antialias=True).numpy()
    ref = tf.image.resize(full.astype(np.float32), (60, 90), antialias=True).numpy()
    assert np.abs(small - ref).mean() < 0.3


def _tiff(big_endian: bool, entries: list[tuple[int, int, int]]) -> bytes:
    o = ">" if big_endian else "<"
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(o + "I", 8)
    body = struct.pack(o + "H", len(entries))
    for tag, kind, value in entries:
        payload = struct.pack(o + "HI", value, 0)[:4] if kind == 3 else struct.pack(o + "I", value)
        body += struct.pack(o + "HHI", tag, kind, 1) + payload
    return head + body + b"\0\0\0\0"


def _jpeg_with_app1(cat: np.ndarray, payload: bytes) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(cat[:40, :60]).save(buf, "JPEG")
    raw = buf.getvalue()
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return raw[:2] + seg + raw[2:]


@pytest.mark.parametrize(
    "tiff,want",
    [
        (_tiff(True, [(0x010F, 2, 0), (0x0112, 3, 8)]), 8),  # big-endian ("MM"), after another entry
        (_tiff(False, [(0x0112, 4, 5)]), 5),  # type LONG
        (_tiff(False, [(0x0112, 3, 9)]), 1),  # out of range
        (_tiff(False, [(0x0110, 3, 6)]), 1),  # no orientation entry
        (b"XX*\x00" + b"\0" * 20, 1),  # no byte order mark
        (_tiff(False, [(0x0112, 3, 6)])[:12], 1),  # cut inside the entry
    ],
)
def test_graph_and_python_parsers_read_the_same_tag(cat, tiff, want):
    blob = _jpeg_with_app1(cat, orientation.EXIF_HEADER + tiff)
    assert orientation.jpeg_orientation(blob) == want
    assert int(orientation.tf_jpeg_orientation(tf.constant(blob))) == want
    got = np.asarray(Image.open(io.BytesIO(blob)).getexif().get(0x0112, 1))
    if want != 1:
        assert got == want  # PIL reads the same tag


def test_damaged_exif_never_fails_and_both_parsers_agree(cat):
    """Random bytes written over the EXIF segment: no error, and the graph's answer is Python's."""
    blob = bytearray(tagged_jpeg(cat[:64, :64], 6))
    start = blob.index(orientation.EXIF_HEADER)
    rng = np.random.default_rng(0)
    variants = []
    for _ in range(60):
        b = bytearray(blob)
        for pos in rng.integers(start - 4, start + 60, 3):
            b[pos] = int(rng.integers(0, 256))
        variants.append(bytes(b))
    variants += [blob[:n] for n in (0, 3, start, start + 8, start + 20)]
    fn = tf.function(orientation.tf_jpeg_orientation, input_signature=[tf.TensorSpec([], tf.string)])
    for v in variants:
        assert int(fn(tf.constant(bytes(v)))) == orientation.jpeg_orientation(bytes(v))


# --- WebP ----------------------------------------------------------------------------------------


def _webp(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "WEBP", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["lossy", "lossless", "alpha"])
def test_webp_is_decoded_everywhere_as_pil_decodes_it(cat, kind, tmp_path):
    arr = np.dstack([cat, np.full(cat.shape[:2], 120, np.uint8)]) if kind == "alpha" else cat
    blob = _webp(arr, lossless=True) if kind == "lossless" else _webp(arr, quality=85)
    path = tmp_path / "cat.webp"
    path.write_bytes(blob)
    assert images.is_image_path(path)
    want = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(images.load_rgb(path), want)
    np.testing.assert_array_equal(decode_file(tf.constant(str(path))).numpy(), want)
    info = sd.header_info(tf.constant(blob))
    assert (int(info["format"]), int(info["problem"])) == (sd.WEBP, sd.OK)
    assert (int(info["height"]), int(info["width"])) == cat.shape[:2]
    served = sd.decode_images(tf.constant([blob]), (32, 48), "plain").numpy()[0]
    ref = tf.image.resize(want.astype(np.float32), (32, 48), antialias=True).numpy()
    assert np.abs(served - ref).max() <= 1e-3


def _vp8x_header(width: int, height: int, flags: int = 0) -> bytes:
    chunk = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_webp_headers_are_held_to_the_pixel_limit(tmp_path):
    bomb = _vp8x_header(20000, 20000)
    with pytest.raises(tf.errors.InvalidArgumentError, match="is a WebP of 20000x20000"):
        sd.decode_images(tf.constant([bomb]), (32, 32), "plain")
    animated = _vp8x_header(30, 20, flags=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="is an animated WebP, which the serving graph"):
        sd.decode_images(tf.constant([animated]), (32, 32), "plain")
    path = tmp_path / "big.webp"
    path.write_bytes(_webp(np.zeros((50, 60, 3), np.uint8)))
    with pytest.raises(ImageError) as exc:
        images.load_rgb(path, max_pixels=50 * 60 - 1)
    assert exc.value.reason == "too_large"


# --- HEIC ----------------------------------------------------------------------------------------


def _heic(arr: np.ndarray) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(arr)).save(buf, quality=90)
    return buf.getvalue()


def test_heic_is_decoded_through_pillow_heif_and_refused_by_the_serving_graph(cat, tmp_path):
    blob = _heic(cat)
    path = tmp_path / "cat.heic"
    path.write_bytes(blob)
    assert images.heif_support()
    got = images.load_rgb(path)
    assert got.shape == cat.shape and np.abs(got.astype(int) - cat).mean() < 8
    np.testing.assert_array_equal(decode_file(tf.constant(str(path))).numpy(), got)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is an image in the HEIC/HEIF format"):
        sd.decode_images(tf.constant([blob]), (32, 32), "plain")


def test_heic_without_the_extra_names_the_install_command(cat, tmp_path, monkeypatch):
    path = tmp_path / "cat.heic"
    path.write_bytes(_heic(cat))
    monkeypatch.setattr(images, "_HEIF", False)  # as if pillow-heif were not installed
    with pytest.raises(ImageError) as exc:
        images.load_rgb(path)
    assert exc.value.reason == images.NEEDS_EXTRA
    assert 'pip install "tlkit[heic]"' in str(exc.value)


def test_path_helpers():
    assert all(images.is_image_path(Path(f"a{ext.upper()}")) for ext in (".webp", ".heic", ".heif", ".avif"))
    assert images.bmff_kind(b"\0\0\0\x18ftypheic") == "HEIF"
    assert images.bmff_kind(b"\0\0\0\x18ftypavif") == "AVIF"
    assert images.bmff_kind(b"\0\0\0\x18ftypisom") is None


def test_avif_is_decoded_through_pil_and_refused_by_the_serving_graph(cat, tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    buf = io.BytesIO()
    Image.fromarray(cat).save(buf, "AVIF", quality=90)
    path = tmp_path / "cat.avif"
    path.write_bytes(buf.getvalue())
    got = images.load_rgb(path)
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(decode_file(tf.constant(str(path))).numpy(), got)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is an image in the AVIF format"):
        sd.decode_images(tf.constant([buf.getvalue()]), (32, 32), "plain")
