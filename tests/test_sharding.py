"""Multi-worker input sharded by file (tlkit.data.sharding): each worker's share of every global batch,
equal step counts, and the union of the shares being the one-process batch (fast, in one process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.data import pipeline as tldata
from tlkit.data import sharding
from tlkit.data.sharding import Shard


def test_positions_split_every_global_batch_and_cover_the_epoch_once():
    for n, b, workers in [(48, 16, 2), (50, 16, 2), (10, 3, 2), (7, 16, 3), (5, 2, 3), (1, 4, 2)]:
        shares = [sharding.positions(n, b, Shard(i, workers)) for i in range(workers)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(n))
        for i, share in enumerate(shares):
            # Its offsets in each global batch: i, i+N, ...; full batches give it b//N or one more.
            assert all((p % b) % workers == i for p in share)
            per_step = np.bincount(share // b, minlength=sharding.steps(n, b))
            assert (per_step[: n // b] == sharding.worker_batch_size(b, Shard(i, workers))).all()
    assert sharding.share(list("abcdefg"), 4, Shard(1, 2)) == ["b", "d", "f"]
    assert sharding.positions(48, 16, Shard(0, 2)).size == 24
    with pytest.raises(ValueError):
        Shard(2, 2)


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (24, 24, 3)).astype(np.uint8)
            img[..., c] = 255
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def _steps(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


@pytest.mark.parametrize("cache", [False, "mem"])
def test_two_shares_make_the_one_process_batches_with_equal_step_counts(tmp_path, monkeypatch, cache):
    log = tmp_path / "opened"
    log.mkdir()
    monkeypatch.setenv(sharding.OPENED_ENV, str(log))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    from tlkit.data.sources import resolve

    source = resolve(str(_folder(tmp_path / "d", 7)), val_split=0.0, seed=0)  # 21 images
    epoch = tldata.epoch_variable()
    kw = dict(image_size=(16, 16), batch_size=4, seed=3, epoch=epoch, cache=cache)
    one = tldata.make_dataset(source, "train", training=True, augment="crop", **kw)
    two = [
        tldata.make_dataset(source, "train", training=True, augment="crop", shard=Shard(i, 2), **kw) for i in range(2)
    ]
    # Three workers on a batch of 4 and the epoch's 21 items: the last global batch (1 item) leaves
    # two of them empty; every worker still runs 6 steps.
    three = [tldata.make_dataset(source, "train", training=False, shard=Shard(i, 3), **kw) for i in range(3)]
    for e in (0, 1):
        epoch.assign(e)
        for f in log.iterdir():
            f.unlink()
        whole = _steps(one)
        parts = [_steps(d) for d in two]
        assert len(whole) == len(parts[0]) == len(parts[1]) == 6
        opened = log / f"opened-{sharding.worker_label()}.txt"
        if cache and e == 1:
            assert not opened.exists()  # the cache holds every share: nothing opened again
            continue
        # Each file once for the one-process epoch and once more over the two shares together.
        paths = [line.split("\t")[1] for line in opened.read_text().splitlines()]
        assert len(paths) == 42 and sorted(set(paths)) == sorted(paths[:21]) == sorted(paths[21:])
        if cache:
            continue  # --cache: each worker shuffles its own fixed share; no single-process batch to match
        for (x, y), (x0, y0), (x1, y1) in zip(whole, parts[0], parts[1]):
            # Worker i holds offsets i, i+2, ... of the global batch: interleaved, they are the batch.
            xs, ys = np.empty_like(x), np.empty_like(y)
            xs[0::2], xs[1::2], ys[0::2], ys[1::2] = x0, x1, y0, y1
            np.testing.assert_allclose(xs, x, atol=1e-3)
            assert (ys == y).all()
    sizes = [[len(y) for _, y in _steps(d)] for d in three]
    assert sizes == [[2, 2, 2, 2, 2, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]]
