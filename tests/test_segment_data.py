"""Segmentation data (issue 22): mask files, finding and checking pairs, the joint augmentation, the generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.data.orientation import stored_numpy
from tlkit.errors import AlreadyExistsError, DataError
from tlkit.segment import masks, sources, synthetic

# Class c is painted in COLOURS[c]; the file's ignore region (255) in white.
COLOURS = np.array([[20, 20, 200], [220, 40, 40], [40, 200, 60], [230, 200, 30]], np.uint8)
WHITE = np.array([255, 255, 255], np.uint8)


def _blocks(h: int, w: int, seed: int) -> np.ndarray:
    """A mask of 4 classes in rectangles and a disc, a corner of ignore: [h, w] uint8."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for c in (1, 2, 3):
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        m[y : y + h // 3, x : x + w // 3] = c
    yy, xx = np.mgrid[:h, :w]
    m[(yy - h * 0.7) ** 2 + (xx - w * 0.3) ** 2 < (h / 6) ** 2] = 2
    m[: h // 8, -w // 8 :] = masks.IGNORE
    return m


def _paint(m: np.ndarray) -> np.ndarray:
    out = COLOURS[np.minimum(m, 3)]
    out[m == masks.IGNORE] = WHITE
    return out


def _pair(folder: Path, stem: str, mask: np.ndarray, *, image: np.ndarray | None = None, fmt: str = "PNG") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    img = _paint(mask) if image is None else image
    Image.fromarray(img).save(folder / "images" / f"{stem}.{'png' if fmt == 'PNG' else 'jpg'}", format=fmt)
    masks.write_mask(folder / "masks" / f"{stem}.png", mask, 256)


@pytest.fixture(scope="module")
def painted(tmp_path_factory) -> sources.SegSource:
    """Six 48x64 pairs whose pixel colour tells the class (PNG, lossless), classes.txt with 4 names."""
    root = tmp_path_factory.mktemp("painted")
    for i in range(6):
        _pair(root, f"p{i}", _blocks(48, 64, i))
    (root / "classes.txt").write_text("background\nred\ngreen\nyellow\n")
    return sources.find_pairs(str(root), val_split=0.34, seed=0)


# --- masks.py ------------------------------------------------------------------------------------


def test_palette_is_pascal_voc():
    p = masks.palette(256)
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert p[:6].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
    assert p[255].tolist() == [224, 224, 192] and len({tuple(c) for c in p}) == 256


def test_mask_round_trip_and_gray_masks(tmp_path):
    m = _blocks(20, 30, 1)
    masks.write_mask(tmp_path / "m.png", m, 4)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "m.png"), m)
    Image.fromarray(m).save(tmp_path / "l.png")  # mode L
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "l.png"), m)
    with pytest.raises(DataError, match="outside 0..3"):
        masks.write_mask(tmp_path / "bad.png", np.full((2, 2), 7, np.uint8), 4)


@pytest.mark.parametrize(
    ("kind", "words"), [("rgb", "mode RGB"), ("16bit", "16-bit"), ("jpeg", "JPEG"), ("text", "not an image")]
)
def test_read_mask_refuses_non_index_files(tmp_path, kind, words):
    path = tmp_path / ("m.jpg" if kind == "jpeg" else "m.png")
    m = _blocks(10, 12, 0)
    if kind == "rgb":
        Image.fromarray(_paint(m)).save(path)
    elif kind == "16bit":
        Image.fromarray(m.astype(np.uint16) * 300).save(path)
    elif kind == "jpeg":
        Image.fromarray(m).save(path, format="JPEG")
    else:
        path.write_text("not a png")
    with pytest.raises(DataError) as e:
        masks.read_mask(path)
    assert words in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


# --- sources.py ------------------------------------------------------------------------------------


def test_find_pairs_flat_folder_seeded_split(tmp_path):
    for i in range(10):
        _pair(tmp_path, f"a{i}", np.full((8, 8), i % 3, np.uint8))
    a = sources.find_pairs(str(tmp_path), val_split=0.2, seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (8, 2, 0)
    assert a.classes == ["class_0", "class_1", "class_2"]  # from the largest index, no classes.txt
    assert a.train == sorted(a.train) and all(
        Path(p).is_absolute() and Path(p).stem == Path(m).stem for p, m in a.train
    )
    assert sources.find_pairs(str(tmp_path), val_split=0.2, seed=0) == a
    assert {sources.find_pairs(str(tmp_path), val_split=0.2, seed=s).val[0] for s in range(6)} != {a.val[0]}
    assert set(a.train).isdisjoint(a.val) and len(set(a.train) | set(a.val)) == 10


def test_find_pairs_split_folders_without_val(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for i in range(n):
            _pair(tmp_path / split, f"{split}{i}", np.full((4, 4), 1, np.uint8))
    s = sources.find_pairs(str(tmp_path), val_split=0.2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (4, 1, 2) and s.classes == ["class_0", "class_1"]
    assert all("/train/" in p for p, _ in s.train + s.val) and all("/test/" in p for p, _ in s.test)


def test_find_pairs_unmatched_files_are_named(tmp_path):
    _pair(tmp_path, "a", np.zeros((4, 4), np.uint8))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "lonely.jpg")
    with pytest.raises(DataError, match=r"image .*lonely\.jpg has no mask"):
        sources.find_pairs(str(tmp_path))
    (tmp_path / "images" / "lonely.jpg").unlink()
    masks.write_mask(tmp_path / "masks" / "orphan.png", np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(DataError, match=r"mask .*orphan\.png has no image"):
        sources.find_pairs(str(tmp_path))


def test_find_pairs_csv_with_and_without_split(tmp_path):
    for i in range(5):
        _pair(tmp_path / "d", f"c{i}", np.full((6, 6), i % 2, np.uint8))
    (tmp_path / "classes.txt").write_text("bg\nthing\n")
    rows = [f"d/images/c{i}.png,d/masks/c{i}.png,{'val' if i == 4 else 'train'}" for i in range(5)]
    (tmp_path / "s.csv").write_text("image,mask,split\n" + "\n".join(rows) + "\n")
    s = sources.find_pairs(str(tmp_path / "s.csv"))
    assert [Path(p).name for p, _ in s.val] == ["c4.png"] and len(s.train) == 4 and s.classes == ["bg", "thing"]
    (tmp_path / "n.csv").write_text("image,mask\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    n = sources.find_pairs(str(tmp_path / "n.csv"), val_split=0.4, seed=3)
    assert (len(n.train), len(n.val)) == (3, 2) and sorted(n.train + n.val) == sorted(s.train + s.val)


def test_check_pairs_counts_pixels(painted):
    seen = []
    report = sources.check_pairs(painted, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i + 1, 6) for i in range(6)]
    for split in ("train", "val"):
        pairs = painted.split(split)
        counts = sum(np.bincount(masks.read_mask(m).ravel(), minlength=256) for _, m in pairs)
        assert report.pixels[split] == counts[:4].tolist() and report.ignored[split] == counts[255] > 0
        assert report.images[split] == len(pairs)
    assert report.rotated == 0 and report.to_dict()["pixels"]["train"]["red"] == report.pixels["train"][1]


def _one_pair_source(tmp_path: Path, image: np.ndarray, mask: np.ndarray, **kw) -> sources.SegSource:
    _pair(tmp_path, "x", mask, image=image, **kw)
    pair = (str(tmp_path / "images" / "x.png"), str(tmp_path / "masks" / "x.png"))
    return sources.SegSource([pair], [], [], ["bg", "a", "b"], str(tmp_path))


def test_check_pairs_size_mismatch_and_unknown_label(tmp_path):
    src = _one_pair_source(tmp_path / "s", np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31), np.uint8))
    with pytest.raises(DataError, match=r"x\.png is 20x31 \(HxW\) but its image .*x\.png is 20x30"):
        sources.check_pairs(src)
    bad = np.zeros((20, 30), np.uint8)
    bad[3, 4], bad[5, 5] = 7, masks.IGNORE
    src = _one_pair_source(tmp_path / "u", np.zeros((20, 30, 3), np.uint8), bad)
    with pytest.raises(DataError, match=r"x\.png has label values \[7\] not among the 3 classes"):
        sources.check_pairs(src)


def test_check_pairs_refuses_an_rgb_mask(tmp_path):
    src = _one_pair_source(tmp_path, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src.train[0][1])
    with pytest.raises(DataError, match=r"mask .*x\.png is a PNG image in mode RGB"):
        sources.check_pairs(src)


def test_check_pairs_exif_rotated_photo(tmp_path):
    """A phone photo stored 60x40 with Orientation 6 is 40x60 upright: a mask drawn on the stored pixels is named."""
    upright = _paint(_blocks(40, 60, 2))
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored_numpy(upright, 6)).save(folder / "images" / "x.jpg", format="JPEG", exif=exif.tobytes())
    masks.write_mask(folder / "masks" / "x.png", stored_numpy(_blocks(40, 60, 2), 6), 4)
    src = sources.SegSource([(str(folder / "images/x.jpg"), str(folder / "masks/x.png"))], [], [], list("abcd"), "")
    with pytest.raises(DataError) as e:
        sources.check_pairs(src)
    msg = str(e.value)
    assert "is 60x40 (HxW) but its image" in msg and "is 40x60" in msg and "EXIF orientation (6)" in msg
    assert "\n" not in msg
    masks.write_mask(folder / "masks" / "x.png", _blocks(40, 60, 2), 4)  # drawn on the upright photo: accepted
    assert sources.check_pairs(src).rotated == 1
    from tlkit.segment.dataset import make_segmentation_dataset  # the pipeline turns the photo upright too

    x, m = _batches(make_segmentation_dataset(src.train, size=(40, 60), batch_size=1, training=False))[0]
    labelled = m[0] != masks.IGNORE
    assert (_class_of_colour(x[0])[labelled] == m[0][labelled]).mean() > 0.95


# --- dataset.py ------------------------------------------------------------------------------------


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _class_of_colour(x: np.ndarray) -> np.ndarray:
    d = np.abs(x[..., None, :] - COLOURS.astype(np.float32)).sum(-1)
    return d.argmin(-1)


def test_augmentation_keeps_image_and_mask_aligned(painted):
    """Colour encodes the class: after crops, zooms and flips each labelled pixel still shows its class's colour."""
    import tensorflow as tf

    from tlkit.segment.dataset import make_segmentation_dataset

    epoch = tf.Variable(0, dtype=tf.int64)
    ds = make_segmentation_dataset(painted.train, size=(32, 48), batch_size=4, training=True, seed=1, epoch=epoch)
    xs, ms = [], []
    for e in range(3):
        epoch.assign(e)
        for x, m in _batches(ds):
            xs.append(x), ms.append(m)
    x, m = np.concatenate(xs), np.concatenate(ms)
    assert x.shape == (12, 32, 48, 3) and m.dtype == np.int32
    labelled = m != masks.IGNORE
    # Interior pixels (5x5 all one class: the antialiasing kernel's reach): the exact colour; every labelled
    # pixel: the nearest colour is its class.
    pad = np.pad(m, ((0, 0), (2, 2), (2, 2)), mode="edge")
    near = [pad[:, 2 + dy : 34 + dy, 2 + dx : 50 + dx] == m for dy in range(-2, 3) for dx in range(-2, 3)]
    same = np.all(near, 0)
    interior = same & labelled
    assert np.abs(x[interior] - COLOURS[m[interior]]).max() < 1.0
    assert (_class_of_colour(x)[labelled] == m[labelled]).mean() > 0.97
    # 255 only where the file has it (white) or from padding (black), or a blend of the two (gray): no class colour.
    ign = ~labelled & same
    assert ign.sum() > 0 and np.ptp(x[ign], axis=-1).max() < 1.0
    assert (np.abs(x[ign]).max(-1) < 1.0).any(), "some zoomed-out crops pad with ignore"
    val = _batches(make_segmentation_dataset(painted.train, size=(32, 48), batch_size=4, training=False))
    plain = np.concatenate([v[1] for v in val])
    assert not any(np.array_equal(mm, p) for mm in m for p in plain), "every training mask was augmented"


def test_flip_moves_image_and_mask_together():
    """Without zoom the crop is the whole image: the output is the plain resize or its mirror, both seen."""
    from tlkit.segment.dataset import augment_pair, resize_pair

    m = _blocks(30, 40, 3)
    plain = [a.numpy() for a in resize_pair(_paint(m), m, (30, 40))]
    flipped = 0
    for s in range(8):
        x, y = (a.numpy() for a in augment_pair(_paint(m), m, (30, 40), np.array([s, 0]), scale=(1.0, 1.0)))
        mirrored = np.array_equal(y, plain[1][:, ::-1])
        assert mirrored or np.array_equal(y, plain[1])
        np.testing.assert_array_equal(x, plain[0][:, ::-1] if mirrored else plain[0])
        flipped += mirrored
    assert 0 < flipped < 8


def test_same_seed_and_epoch_same_batches_and_validation_is_plain(painted):
    import tensorflow as tf

    from tlkit.segment.dataset import make_segmentation_dataset, resize_pair

    def run(epoch_value: int, cache: bool = False) -> list:
        epoch = tf.Variable(epoch_value, dtype=tf.int64)  # a fresh pipeline, as a resumed process builds
        return _batches(
            make_segmentation_dataset(
                painted.train, size=(32, 32), batch_size=2, training=True, seed=5, epoch=epoch, cache=cache
            )
        )

    a, b, c = run(2), run(2), run(3)
    for (xa, ma), (xb, mb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb), np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(np.concatenate([p[1] for p in a]), np.concatenate([p[1] for p in c]))
    for (xa, ma), (xd, md) in zip(a, run(2, cache=True), strict=True):  # the in-memory copy: the same pixels
        np.testing.assert_array_equal(xa, xd), np.testing.assert_array_equal(ma, md)
    free = make_segmentation_dataset(painted.train, size=(32, 32), batch_size=4, training=True, seed=5)
    assert not np.array_equal(_batches(free)[0][1], _batches(free)[0][1])  # no epoch variable: each pass differs
    val = _batches(make_segmentation_dataset(painted.val, size=(24, 40), batch_size=3, training=False))
    assert val[0][0].shape == (len(painted.val), 24, 40, 3)
    for i, (img, msk) in enumerate(painted.val):
        x, m = resize_pair(np.asarray(Image.open(img)), masks.read_mask(msk), (24, 40))
        np.testing.assert_array_equal(val[0][0][i], x.numpy()), np.testing.assert_array_equal(val[0][1][i], m.numpy())


# --- synthetic.py ------------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.*"))}


def test_generator_is_deterministic_and_labels_known_objects(tmp_path):
    a = synthetic.make_dataset_folder(tmp_path / "a", train=10, val=3, test=2, size=64, seed=7)
    b = synthetic.make_dataset_folder(tmp_path / "b", train=12, val=3, test=2, size=64, seed=7)
    c = synthetic.make_dataset_folder(tmp_path / "c", train=10, val=3, test=2, size=64, seed=8)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) == 2 * 15 + 1 and all(db[k] == v for k, v in da.items())  # more images: the first ones unchanged
    assert sum(da[k] != dc[k] for k in da) == 2 * 15  # another seed: every image and mask differs
    with pytest.raises(AlreadyExistsError):
        synthetic.make_dataset_folder(a, train=1, val=0, test=0)
    src = sources.find_pairs(str(b))
    assert src.classes == synthetic.CLASSES and (len(src.train), len(src.val), len(src.test)) == (12, 3, 2)
    report = sources.check_pairs(src)
    seen = np.flatnonzero(np.sum([report.pixels[s] for s in ("train", "val", "test")], 0))
    assert len(synthetic.CLASSES) == 7 and seen.tolist() == list(range(7))  # every class is drawn
    assert report.ignored == {"train": 0, "val": 0, "test": 0}
    for _, m in src.train:  # objects are not boxes: most masks have a labelled pixel whose row neighbour differs
        mask = masks.read_mask(m)
        assert 0 < (mask > 0).mean() < 1


def test_object_masks_are_not_rectangles():
    for cls, (rgb, mask) in synthetic.objects().items():
        assert rgb.shape[:2] == mask.shape and 0.3 < mask.mean() < 0.9, (synthetic.CLASSES[cls], mask.mean())


def test_workers_shares_make_the_one_process_batches(painted):
    """--workers 2: at every step worker i holds items i, i+2, ... of the one-process batch, same crops."""
    import tensorflow as tf

    from tlkit.data.sharding import Shard
    from tlkit.segment.dataset import make_segmentation_dataset

    pairs = painted.train + painted.val  # 6 pairs: global batches of 4 and 2
    epoch = tf.Variable(1, dtype=tf.int64)

    def run(shard=None, training=True):
        kw = dict(size=(16, 24), batch_size=4, training=training, seed=2, epoch=epoch, shard=shard)
        return _batches(make_segmentation_dataset(pairs, **kw))

    for training in (True, False):
        one, w0, w1 = run(None, training), run(Shard(0, 2), training), run(Shard(1, 2), training)
        assert len(one) == len(w0) == len(w1) == 2
        for (x, m), (x0, m0), (x1, m1) in zip(one, w0, w1):
            np.testing.assert_array_equal(x[0::2], x0), np.testing.assert_array_equal(x[1::2], x1)
            np.testing.assert_array_equal(m[0::2], m0), np.testing.assert_array_equal(m[1::2], m1)
