"""--cache (tlkit.data.cache): the cached pipeline gives exactly the uncached pixels, later epochs
read no file, augmentation stays random per epoch, and a budget too small says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tlkit.data import cache as tlcache
from tlkit.errors import ConfigError

SIZE = (24, 32)


@pytest.fixture()
def items(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(7):
        p = tmp_path / "img" / f"{i}.{'jpg' if i % 2 else 'png'}"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 50, 3), dtype=np.uint8)).save(p)
        rows.append({"path": str(p), "label_id": i % 3})
    return pd.DataFrame(rows)


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.concatenate(xs), np.concatenate(ys)


def _ds(items, where, *, training=False, augment=None, budget=None, log=None):
    return tlcache.cached_dataset(
        items,
        image_size=SIZE,
        batch_size=3,
        training=training,
        augment=augment,
        seed=5,
        shuffle_buffer=64,
        flip=True,
        color=True,
        channels=3,
        skip_undecodable=False,
        where=where,
        budget=budget,
        log=log,
    )


def test_budget_sizes_parse_and_a_bad_one_names_the_flag():
    assert tlcache.parse_budget("2GiB") == 2 * 2**30 and tlcache.parse_budget("500MB") == 500 * 10**6
    assert tlcache.parse_budget("1.5k") == 1500 and tlcache.parse_budget("123") == 123
    with pytest.raises(ConfigError, match="--cache-budget"):
        tlcache.parse_budget("lots")
    assert tlcache.cached_size((224, 224), "crop") == (256, 256) and tlcache.cached_size((224, 224), None) == (224, 224)


@pytest.mark.parametrize("where", ["mem", "dir"])
def test_cache_gives_the_uncached_pixels_and_later_epochs_read_no_file(items, tmp_path, where):
    where = tlcache.MEM if where == "mem" else str(tmp_path / "cache")
    # The uncached stage the cache holds: decoded, resized, rounded uint8, before augmentation.
    want_x, want_y = _epoch(
        tlcache.prepared_dataset(items["path"].tolist(), items["label_id"].to_numpy(np.int32), SIZE).batch(3)
    )
    assert want_x.dtype == np.uint8 and want_x.shape == (7, *SIZE, 3)
    ds = _ds(items, where)
    x1, y1 = _epoch(ds)
    assert x1.dtype == np.float32
    np.testing.assert_array_equal(x1.astype(np.uint8), want_x)  # byte for byte
    assert np.array_equal(x1, x1.astype(np.uint8)) and list(y1) == list(want_y)
    for p in items["path"]:  # nothing left to read: a second epoch must come from the cache
        Path(p).unlink()
    x2, y2 = _epoch(ds)
    np.testing.assert_array_equal(x2, x1)
    assert list(y2) == list(y1)
    if where != tlcache.MEM:
        assert len(list(Path(where).glob("images-24x32-*.index"))) == 1


def test_augmentation_stays_random_per_epoch_from_the_cache(items):
    cached = _ds(items, tlcache.MEM, training=True, augment="crop")
    plain = _ds(items, None, training=True, augment="crop")  # the same pipeline without the cache
    c1, cy1 = _epoch(cached)
    p1, py1 = _epoch(plain)
    np.testing.assert_array_equal(c1, p1)  # the same seed gives the same crops, cached or not
    assert list(cy1) == list(py1) and c1.shape == (7, *SIZE, 3)
    for p in items["path"]:
        Path(p).unlink()
    c2, cy2 = _epoch(cached)
    assert sorted(cy2) == sorted(cy1)  # every image again, from memory
    assert not np.array_equal(c2, c1)  # new crops and a new order: augmentation is per epoch


def test_data_over_the_budget_runs_uncached_and_says_so(items):
    lines: list[str] = []
    need = 7 * int(np.prod(tlcache.cached_size(SIZE, "crop"))) * 3
    assert _ds(items, tlcache.MEM, training=True, augment="crop", budget=need - 1, log=lines.append) is None
    assert len(lines) == 1 and "--cache-budget" in lines[0] and "without the cache" in lines[0]
    assert _ds(items, tlcache.MEM, training=True, augment="crop", budget=need, log=lines.append) is not None


def test_make_dataset_uses_the_cache_and_falls_back(items, capsys):
    from tlkit.data import pipeline as tldata

    source = tldata.DataSource(
        spec="x",
        description="x",
        kind="files",
        classes=["a", "b", "c"],
        items=items.assign(split="train", label=items["label_id"].astype(str)),
        split_method="given",
    )
    x, _ = _epoch(tldata.make_dataset(source, "train", image_size=SIZE, batch_size=4, training=False, cache="mem"))
    assert np.array_equal(x, np.round(x))  # the cached (rounded uint8) images
    tldata.make_dataset(source, "train", image_size=SIZE, batch_size=4, training=False, cache="mem", cache_budget=10)
    assert "running without the cache" in capsys.readouterr().err
