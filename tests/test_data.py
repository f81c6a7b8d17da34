"""Data sources (folders, CSV manifests, builtins, prepared TFDS) and the tf.data pipeline."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.data import builtins as builtin_data
from tlkit.data import pipeline as data
from tlkit.data.images import load_rgb
from tlkit.data.pipeline import DataError


def _img(path: Path, seed: int, size: tuple[int, int] = (16, 16), mode: str = "RGB", fmt: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[0], size[1], 4), dtype=np.uint8)
    im = Image.fromarray(arr, "RGBA")
    im = im.convert(mode) if mode == "RGBA" else im.convert("RGB").convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def _folder(root: Path, counts: dict[str, int], seed0: int = 0) -> Path:
    k = seed0
    for cls, n in counts.items():
        for i in range(n):
            _img(root / cls / f"{cls}{i}.png", k)
            k += 1
    return root


COUNTS = {"cat": 6, "dog": 4, "emu": 5}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return _folder(tmp_path / "photos", COUNTS)


# --------------------------------------------------------------------------- folders and splits


def test_folder_classes_counts_and_items(folder: Path):
    src = data.resolve(str(folder))
    assert src.kind == "files"
    assert src.classes == ["cat", "dog", "emu"]
    items = src.items
    assert list(items.columns) == ["path", "label", "label_id", "split"]
    assert dict(Counter(items["label"])) == COUNTS
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in items["path"])
    assert (items["label_id"] == items["label"].map({"cat": 0, "dog": 1, "emu": 2})).all()
    assert src.split_method == "stratified"
    # round(n * 0.2), at least one per class: 6 -> 1, 4 -> 1, 5 -> 1
    val = items[items["split"] == "val"]
    assert dict(Counter(val["label"])) == {"cat": 1, "dog": 1, "emu": 1}
    assert data.dataset_size(src, "train") == 12 and data.dataset_size(src, "val") == 3
    assert data.dataset_size(src, "test") == 0


def test_split_is_seeded_stratified_and_location_independent(folder: Path, tmp_path: Path):
    def val_files(path: Path, seed: int, frac: float = 0.5) -> set[str]:
        items = data.resolve(str(path), val_split=frac, seed=seed).items
        return {str(Path(p).relative_to(path)) for p in items.loc[items["split"] == "val", "path"]}

    a = val_files(folder, 0)
    assert a == val_files(folder, 0)
    # floor(n * 0.5 + 0.5): cat 3, dog 2, emu 3
    assert Counter(Path(p).parent.name for p in a) == {"cat": 3, "dog": 2, "emu": 3}
    seeds = {frozenset(val_files(folder, s)) for s in range(1, 6)}
    assert len(seeds | {frozenset(a)}) > 1, "other seeds must give other splits"
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "copy")
    assert val_files(moved, 0) == a  # split keys are relative paths: moving the data changes nothing


def test_stratified_split_ignores_listing_order():
    keys = [f"c{i % 3}/f{i}.png" for i in range(30)]
    labels = [k.split("/")[0] for k in keys]
    base = dict(zip(keys, data.stratified_split(keys, labels, 0.3, seed=7)))
    perm = np.random.default_rng(0).permutation(30)
    shuffled = dict(
        zip(
            [keys[i] for i in perm],
            data.stratified_split([keys[i] for i in perm], [labels[i] for i in perm], 0.3, seed=7),
        )
    )
    assert base == shuffled
    assert Counter(labels[i] for i, k in enumerate(keys) if base[k] == "val") == {"c0": 3, "c1": 3, "c2": 3}
    # every class of two or more keeps one image on each side, even at extreme fractions
    assert Counter(data.stratified_split(["a", "b"], ["x", "x"], 0.01, 0)) == {"train": 1, "val": 1}
    assert Counter(data.stratified_split(["a", "b"], ["x", "x"], 0.99, 0)) == {"train": 1, "val": 1}
    assert data.stratified_split(["a"], ["x"], 0.5, 0) == ["train"]


def test_folder_with_split_subfolders(tmp_path: Path):
    root = tmp_path / "d"
    _folder(root / "train", {"a": 3, "b": 2})
    _folder(root / "validation", {"a": 1, "b": 1}, seed0=50)
    _folder(root / "test", {"a": 1}, seed0=60)
    src = data.resolve(str(root), val_split=0.5)
    assert src.split_method == "folders" and src.classes == ["a", "b"]
    got = Counter(zip(src.items["split"], src.items["label"]))
    assert got == {("train", "a"): 3, ("train", "b"): 2, ("val", "a"): 1, ("val", "b"): 1, ("test", "a"): 1}


def test_non_image_files_are_listed_as_ignored(folder: Path):
    (folder / "cat" / "notes.txt").write_text("hello")
    (folder / "README.md").write_text("about")
    (folder / "cat" / ".DS_Store").write_bytes(b"\0")
    src = data.resolve(str(folder))
    assert sorted(Path(i["path"]).name for i in src.ignored) == ["README.md", "notes.txt"]
    assert len(src.items) == 15


def test_nested_files_belong_to_their_class(folder: Path):
    _img(folder / "dog" / "sub" / "deep.jpg", 99)
    src = data.resolve(str(folder))
    row = src.items[src.items["path"].str.endswith("deep.jpg")]
    assert row["label"].tolist() == ["dog"]


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist") as e:
        data.resolve(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(e.value)


def test_folder_without_class_subfolders(tmp_path: Path):
    _img(tmp_path / "flat" / "a.png", 0)
    with pytest.raises(DataError, match="no class subfolders") as e:
        data.resolve(str(tmp_path / "flat"))
    assert "1 image files directly in it" in str(e.value)


def test_empty_class_folder_is_named(folder: Path):
    (folder / "yak").mkdir()
    (folder / "yak" / "readme.txt").write_text("x")
    with pytest.raises(DataError) as e:
        data.resolve(str(folder))
    msg = str(e.value)
    assert f"class folder {folder.resolve() / 'yak'} has no image files" in msg
    assert "readme.txt" in msg and ".png" in msg


def test_single_class(tmp_path: Path):
    _folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DataError, match=r"only one class \('only'\).*at least 2"):
        data.resolve(str(tmp_path / "one"))
    assert data.resolve(str(tmp_path / "one"), min_classes=1).classes == ["only"]


def test_bad_val_split(folder: Path):
    with pytest.raises(DataError, match=r"\[0, 1\)"):
        data.resolve(str(folder), val_split=1.0)


def test_unknown_builtin_lists_builtins():
    with pytest.raises(DataError, match="builtin:digits, builtin:faces"):
        data.resolve("builtin:cifar")


def test_other_file_is_not_a_source(tmp_path: Path):
    p = _img(tmp_path / "x.png", 0)
    with pytest.raises(DataError, match="not a .csv manifest"):
        data.resolve(str(p))


# --------------------------------------------------------------------------- CSV manifests


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_split_column_and_relative_paths(folder: Path, tmp_path: Path, monkeypatch):
    rows = ["path,label,split"]
    for cls in COUNTS:
        files = sorted((folder / cls).glob("*.png"))
        rows += [f"photos/{cls}/{f.name},{cls},{'validation' if i == 0 else 'train'}" for i, f in enumerate(files)]
    rows.append(f"{folder / 'cat' / 'cat5.png'},cat,TEST")  # absolute path, upper-case split
    csv_path = _write_csv(tmp_path / "m.csv", "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path / "photos" / "dog")  # relative paths follow the CSV, not the cwd
    src = data.resolve(str(csv_path))
    assert src.split_method == "manifest" and src.classes == ["cat", "dog", "emu"]
    got = Counter(zip(src.items["split"], src.items["label"]))
    assert got == {
        ("train", "cat"): 5,
        ("val", "cat"): 1,
        ("train", "dog"): 3,
        ("val", "dog"): 1,
        ("train", "emu"): 4,
        ("val", "emu"): 1,
        ("test", "cat"): 1,
    }
    assert all(Path(p).is_file() for p in src.items["path"])


def test_csv_without_split_is_stratified(folder: Path, tmp_path: Path):
    rows = ["label , PATH"]  # order, spacing and case of the header do not matter
    rows += [f"{f.parent.name},{f}" for f in sorted(folder.rglob("*.png"))]
    csv_path = _write_csv(tmp_path / "m.csv", "\n".join(rows) + "\n")
    src = data.resolve(str(csv_path), val_split=0.5, seed=3)
    assert src.split_method == "stratified"
    val = src.items[src.items["split"] == "val"]
    assert dict(Counter(val["label"])) == {"cat": 3, "dog": 2, "emu": 3}
    again = data.resolve(str(csv_path), val_split=0.5, seed=3)
    assert again.items.equals(src.items)


def test_csv_unknown_columns_are_named(tmp_path: Path):
    p = _write_csv(tmp_path / "m.csv", "path,label,weight,source\na.png,x,1,web\n")
    with pytest.raises(DataError) as e:
        data.resolve(str(p))
    msg = str(e.value)
    assert "unknown column(s) 'weight', 'source'" in msg and "path, label" in msg and "split" in msg


def test_csv_missing_label_column(tmp_path: Path):
    p = _write_csv(tmp_path / "m.csv", "path\na.png\n")
    with pytest.raises(DataError, match="no 'label' column"):
        data.resolve(str(p))


def test_csv_unknown_split_value(folder: Path, tmp_path: Path):
    f = next(folder.rglob("*.png"))
    p = _write_csv(tmp_path / "m.csv", f"path,label,split\n{f},a,train\n{f},b,holdout\n")
    with pytest.raises(DataError, match="unknown split value\\(s\\) 'holdout'"):
        data.resolve(str(p))


def test_csv_empty_cells_name_the_line(folder: Path, tmp_path: Path):
    f = next(folder.rglob("*.png"))
    p = _write_csv(tmp_path / "m.csv", f"path,label\n{f},a\n{f},\n")
    with pytest.raises(DataError, match="empty 'label' on line\\(s\\) 3"):
        data.resolve(str(p))


def test_csv_where_no_path_exists(tmp_path: Path):
    p = _write_csv(tmp_path / "m.csv", "path,label\nx/a.png,a\nx/b.png,b\n")
    with pytest.raises(DataError, match="none of the 2 paths") as e:
        data.resolve(str(p))
    assert str(tmp_path) in str(e.value)


# --------------------------------------------------------------------------- class weights


def test_class_weights_are_sklearns_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    counts = [30, 10, 5]
    y = np.repeat(np.arange(3), counts)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    got = data.class_weights(counts)
    assert list(got) == [0, 1, 2]
    np.testing.assert_allclose([got[i] for i in range(3)], expected)
    assert got[2] == pytest.approx(45 / (3 * 5))
    assert data.class_weights({"a": 4, "b": 0, "c": 4}) == {0: 1.0, 1: 0.0, 2: 1.0}


# --------------------------------------------------------------------------- builtins


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tlkit_cache")


def test_builtin_digits(cache: Path, monkeypatch):
    from sklearn.datasets import load_digits

    src = data.resolve("builtin:digits", cache_dir=str(cache))
    digits = load_digits()
    assert src.classes == [str(i) for i in range(10)]
    assert len(src.items) == 1797
    assert dict(Counter(src.items["label"])) == {str(k): int(v) for k, v in enumerate(np.bincount(digits.target))}
    folder = cache / "builtin" / "digits"
    first = load_rgb(folder / "0" / "0000.png")
    assert first.shape == (8, 8, 3)
    np.testing.assert_array_equal(first[..., 0], np.rint(digits.images[0] * 255 / 16).astype(np.uint8))
    # second call reuses the folder: the loader must not run again
    monkeypatch.setitem(builtin_data.BUILTINS["digits"], "load", lambda: pytest.fail("rewrote the builtin"))
    again = data.resolve("builtin:digits", cache_dir=str(cache))
    assert again.items.equals(src.items)
    assert not [p for p in (cache / "builtin").iterdir() if p.name.startswith(".digits")]  # no temp left


def test_builtin_faces(cache: Path, monkeypatch):
    from skimage.data import lfw_subset

    monkeypatch.setenv("TLKIT_HOME", str(cache))  # the documented default location
    src = data.resolve("builtin:faces")
    assert src.classes == ["face", "non_face"]
    assert dict(Counter(src.items["label"])) == {"face": 100, "non_face": 100}
    img = load_rgb(cache / "builtin" / "faces" / "non_face" / "150.png")
    np.testing.assert_array_equal(img[..., 1], np.rint(lfw_subset()[150] * 255).astype(np.uint8))


def test_builtin_rewrites_an_incomplete_folder(tmp_path: Path):
    broken = tmp_path / "builtin" / "faces"
    (broken / "face").mkdir(parents=True)  # e.g. a copy interrupted before the marker
    path = builtin_data.ensure("faces", cache_dir=tmp_path)
    assert len(list(path.rglob("*.png"))) == 200


# --------------------------------------------------------------------------- tf.data decoding


def _gif(path: Path) -> Path:
    frames = [
        Image.fromarray(np.full((16, 16, 3), c, np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
        for c in ((200, 30, 10), (5, 90, 250))
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


def test_formats_decode_to_rgb_like_load_rgb(tmp_path: Path):
    root = tmp_path / "fmt"
    files = [
        _img(root / "a" / "gray.png", 1, mode="L"),
        _img(root / "a" / "rgba.png", 2, mode="RGBA"),
        _img(root / "a" / "palette.png", 3, mode="P"),
        _img(root / "a" / "photo.jpg", 4),
        _img(root / "b" / "rgb.bmp", 5),
        _img(root / "b" / "palette.bmp", 6, mode="P"),  # TF's own BMP decoder gets these wrong
        _img(root / "b" / "onebit.bmp", 7, mode="1"),  # ... and rejects these
        _gif(root / "b" / "anim.gif"),
    ]
    src = data.resolve(str(root), val_split=0.0)
    ds = data.make_dataset(src, "train", image_size=(16, 16), batch_size=1, training=False)
    got = {}
    for (x, y), path in zip(ds, src.items["path"]):
        got[Path(path).name] = (x.numpy()[0], int(y[0]))
    assert sorted(got) == sorted(f.name for f in files)
    for f in files:
        x, y = got[f.name]
        assert x.dtype == np.float32 and x.shape == (16, 16, 3)
        assert y == (0 if f.parent.name == "a" else 1)
        np.testing.assert_allclose(x, load_rgb(f).astype(np.float32), atol=1e-3, err_msg=f.name)
    np.testing.assert_allclose(got["anim.gif"][0][0, 0], [200, 30, 10], atol=1e-3)  # the first frame


def test_eval_dataset_resizes_in_order(folder: Path):
    src = data.resolve(str(folder))
    ds = data.make_dataset(src, "val", image_size=(8, 12), batch_size=2, training=False, augment=None)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    x = np.concatenate(xs)
    assert x.shape == (3, 8, 12, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255
    val = src.items[src.items["split"] == "val"]
    assert np.concatenate(ys).tolist() == val["label_id"].tolist()  # no shuffling outside training
    assert ys[0].dtype == np.int32


def test_training_order_is_seeded_and_reshuffled_each_epoch(tmp_path: Path):
    src = data.resolve(str(_folder(tmp_path / "many", {"a": 12, "b": 12})), val_split=0.0)

    def epochs(seed: int, n: int = 2) -> list[list[int]]:
        ds = data.make_dataset(src, "train", image_size=(4, 4), batch_size=24, training=True, augment=None, seed=seed)
        out = []
        for _ in range(n):
            for x, _y in ds:
                out.append(x.numpy()[:, 0, 0, 0].round(3).tolist())  # one pixel identifies each image
        return out

    a, b = epochs(1), epochs(1)
    assert a == b
    assert a[0] != a[1], "each epoch must be shuffled anew"
    assert sorted(a[0]) == sorted(a[1])
    assert epochs(2)[0] != a[0]


def test_make_dataset_rejects_unknown_split_and_augmentation(folder: Path):
    src = data.resolve(str(folder))
    with pytest.raises(ValueError, match="split must be one of"):
        data.make_dataset(src, "dev", image_size=(8, 8), batch_size=2, training=False)
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        data.make_dataset(src, "train", image_size=(8, 8), batch_size=2, training=True, augment="mixup")
    with pytest.raises(DataError, match="no images in split 'test'"):
        data.make_dataset(src, "test", image_size=(8, 8), batch_size=2, training=False)


# --------------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> Path:
    """A real prepared TFDS dataset: 20 train (2 classes) + 6 test grayscale images, from numpy."""
    import tensorflow_datasets as tfds

    class TlkitTinyShapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(12, 12, 1)),
                        "label": tfds.features.ClassLabel(names=["square", "circle"]),  # not sorted on purpose
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 20), "test": self._generate_examples(100, 6)}

        def _generate_examples(self, start, n):
            for i in range(start, start + n):
                yield i, {"image": np.full((12, 12, 1), i, np.uint8), "label": i % 2}

    root = tmp_path_factory.mktemp("tfds")
    TlkitTinyShapes(data_dir=str(root)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return root


def test_tfds_prepared_dataset_loads_by_name(tfds_dir: Path):
    src = data.resolve("tfds:tlkit_tiny_shapes", tfds_data_dir=str(tfds_dir), val_split=0.25)
    assert src.kind == "tfds"
    assert src.classes == ["square", "circle"]  # the dataset's label order, not sorted
    assert src.tfds_splits == {"train": "train[:15]", "val": "train[15:]", "test": "test"}
    assert [data.dataset_size(src, s) for s in ("train", "val", "test")] == [15, 5, 6]
    ds = data.make_dataset(src, "test", image_size=(6, 6), batch_size=6, training=False)
    x, y = next(iter(ds))
    assert x.shape == (6, 6, 6, 3) and x.dtype.name == "float32" and y.dtype.name == "int32"
    pixel = x.numpy()[:, 0, 0, :]
    np.testing.assert_allclose(pixel, np.repeat(pixel[:, :1], 3, axis=1))  # gray became RGB
    # each image is filled with its index i (100..105) and labelled i % 2
    assert sorted(zip(pixel[:, 0].round().astype(int).tolist(), y.numpy().tolist())) == [
        (i, i % 2) for i in range(100, 106)
    ]
    tr = data.make_dataset(src, "train", image_size=(6, 6), batch_size=4, training=True, seed=0)
    xb, yb = next(iter(tr))
    assert xb.shape == (4, 6, 6, 3)


def test_tfds_explicit_splits_and_report(tfds_dir: Path):
    from tlkit.data import preflight

    src = data.resolve("tfds:tlkit_tiny_shapes:1.0.0:train[:50%]:train[50%:]", tfds_data_dir=str(tfds_dir))
    assert src.tfds_splits == {"train": "train[:50%]", "val": "train[50%:]"}
    report = preflight.check(src, progress=False)
    counts = report.class_counts
    assert set(counts) == {"train", "val"}
    assert [sum(counts[s].values()) for s in ("train", "val")] == [10, 10]
    assert {c: counts["train"][c] + counts["val"][c] for c in src.classes} == {"square": 10, "circle": 10}
    direct = Counter(int(ex["label"]) for ex in src.builder().as_dataset(split="train[:50%]").as_numpy_iterator())
    assert counts["train"] == {"square": direct[0], "circle": direct[1]}
    assert report.files_checked is False and "file checks skipped" in report.to_text()
    assert report.to_dict()["n_files"] == 20
    # a prepared folder works by path too, without its builder code or a data dir
    direct = data.resolve(f"tfds:{tfds_dir / 'tlkit_tiny_shapes' / '1.0.0'}:test")
    assert direct.tfds_splits == {"train": "test"} and data.dataset_size(direct, "train") == 6


def test_tfds_not_prepared_fails_fast_without_download(tfds_dir: Path, tmp_path: Path):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        data.resolve("tfds:mnist", tfds_data_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "not prepared" in msg and str(tmp_path) in msg and f"tfds build mnist --data_dir {tmp_path}" in msg
    with pytest.raises(DataError, match="Prepared there: tlkit_tiny_shapes"):
        data.resolve("tfds:tlkit_tiny_shapes:2.0.0", tfds_data_dir=str(tfds_dir))
    with pytest.raises(DataError, match="bad split.*splits are: train, test"):
        data.resolve("tfds:tlkit_tiny_shapes:holdout", tfds_data_dir=str(tfds_dir))


def test_16bit_png_gives_the_same_pixels_to_training_and_prediction(tmp_path):
    """PIL clips 16-bit grayscale to white in convert("RGB"); tlkit keeps the high byte, like TensorFlow."""
    import tensorflow as tf

    from tlkit.data.images import load_rgb

    wide = np.random.default_rng(0).integers(0, 65536, (9, 7)).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(wide).save(path)
    ours = load_rgb(path)
    tf_pixels = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
    np.testing.assert_array_equal(ours, tf_pixels)
    assert ours.shape == (9, 7, 3) and ours.std() > 20


# --------------------------------------------------------------------------- links and labels


def test_links_are_followed_once_per_real_folder_and_file(folder: Path, tmp_path: Path):
    outside = _folder(tmp_path / "outside", {"x": 2}, seed0=200) / "x"
    (folder / "dog" / "loop").symlink_to(".")  # a loop: followed ~40 levels deep before
    (folder / "cat" / "up").symlink_to("..")  # the data root: would pull every class in as "cat"
    (folder / "emu" / "more").symlink_to(outside)  # a real extra folder: read
    (folder / "emu" / "more_again").symlink_to(outside)  # the same folder again: not read twice
    (folder / "emu" / "sub").mkdir()
    _img(folder / "emu" / "sub" / "deep.png", 300)
    (folder / "emu" / "a_sub").symlink_to("sub")  # sorts before sub: sub is still the path kept
    (folder / "cat" / "again.png").symlink_to("cat0.png")  # one file, two names: counted once
    (folder / "dog" / "gone.png").symlink_to("nowhere.png")  # dangling: kept for the preflight to name
    src = data.resolve(str(folder))
    names = Counter(zip(src.items["label"], src.items["path"].map(lambda p: Path(p).relative_to(folder).as_posix())))
    assert sum(names.values()) == 15 + 2 + 1 + 1
    assert ("emu", "emu/more/x0.png") in names and ("emu", "emu/sub/deep.png") in names
    assert ("dog", "dog/gone.png") in names and ("cat", "cat/cat0.png") in names
    why = {Path(i["path"]).relative_to(folder).as_posix(): i["why"] for i in src.ignored}
    assert set(why) == {"dog/loop", "cat/up", "emu/more_again", "emu/a_sub", "cat/again.png"}
    assert "not followed" in why["dog/loop"] and "above the class folder" in why["cat/up"]
    assert str(folder / "emu" / "more") in why["emu/more_again"] and str(folder / "emu" / "sub") in why["emu/a_sub"]
    assert "counted once" in why["cat/again.png"] and str(folder / "cat" / "cat0.png") in why["cat/again.png"]


def test_csv_paths_are_not_resolved_through_links(folder: Path, tmp_path: Path):
    (tmp_path / "link.png").symlink_to(folder / "cat" / "cat0.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    p = _write_csv(
        tmp_path / "m.csv", f"path,label\nlink.png,cat\ndangling.png,dog\n{folder / 'dog' / 'dog0.png'},dog\n"
    )
    src = data.resolve(str(p))
    # The manifest's own paths (a link named as such), so the preflight can say "dangling_link".
    assert sorted(src.items["path"]) == sorted(
        [str(tmp_path / "link.png"), str(tmp_path / "dangling.png"), str(folder / "dog" / "dog0.png")]
    )


def test_near_duplicate_class_names_are_warned(folder: Path, tmp_path: Path):
    files = sorted(folder.rglob("*.png"))[:8]
    labels = ["cat", "cat", "Cat ", "dog", "dog ", " dog", "emu", "emu"]
    p = _write_csv(tmp_path / "m.csv", "path,label\n" + "".join(f"{f},{lab}\n" for f, lab in zip(files, labels)))
    src = data.resolve(str(p))
    assert src.classes == ["Cat", "cat", "dog", "emu"]  # surrounding whitespace stripped, case kept
    assert len(src.warnings) == 2
    stripped, case = src.warnings
    assert "2 label(s)" in stripped and "'Cat ' on line 4" in stripped and "'dog ' on line 6" in stripped
    assert "stripped" in stripped  # ' dog' right after the comma is CSV layout: skipped by the reader
    assert "'Cat' (1 file(s)) and 'cat' (2 file(s))" in case and "differ only in case" in case
    assert "whitespace in CSV labels is stripped" in case
    assert data.resolve(str(folder)).warnings == []
    shutil.copytree(folder / "cat", folder / "Cat ")
    warned = data.resolve(str(folder)).warnings
    assert len(warned) == 1 and "'Cat ' (6 file(s)) and 'cat' (6 file(s))" in warned[0]
    assert "rename the folders" in warned[0]
