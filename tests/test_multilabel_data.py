"""Multi-label data: CSV ``labels`` column, ``--multi-label`` folders, the seeded split, the pipeline's
multi-hot labels (files, ``--cache mem``, sharding's padding) and the preflight's multi-label report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from multilabel_data import LABELS, make_multilabel_csv, read_truth
from PIL import Image

from tlkit.data import preflight
from tlkit.data.multilabel import multi_hot
from tlkit.data.sources import resolve
from tlkit.data.splits import multilabel_split
from tlkit.errors import DataError


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)).save(path)
    return path


def _csv(tmp_path: Path, text: str, n: int = 4) -> Path:
    for i in range(n):
        _png(tmp_path / f"{i}.png", i)
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


def _by_name(src) -> dict[str, tuple]:
    return {Path(p).name: (lab, lid, ids, s) for p, lab, lid, ids, s in src.items.itertuples(index=False)}


def test_labels_column_parses_names_spaces_and_empty_cells(tmp_path):
    p = _csv(
        tmp_path, 'path,labels,split\n0.png,"dog | cat",train\n1.png,,train\n2.png,cat|,val\n3.png,dog|dog,train\n'
    )
    src = resolve(str(p))
    assert src.multi_label and src.classes == ["cat", "dog"]
    assert list(src.items.columns) == ["path", "label", "label_id", "label_ids", "split"]
    assert _by_name(src) == {
        "0.png": ("cat|dog", 0, (0, 1), "train"),
        "1.png": ("", -1, (), "train"),
        "2.png": ("cat", 0, (0,), "val"),
        "3.png": ("dog", 1, (1,), "train"),
    }
    assert multi_hot(src.items["label_ids"], 2).tolist() == [[1, 1], [0, 0], [1, 0], [0, 1]]


@pytest.mark.parametrize("cell", ['"cat,dog"', "cat;dog", '"cat\tdog"'])
def test_another_separator_is_refused_in_one_line(tmp_path, cell):
    p = _csv(tmp_path, f"path,labels\n0.png,{cell}\n1.png,cat\n")
    with pytest.raises(DataError) as e:
        resolve(str(p))
    msg = str(e.value)
    assert "\n" not in msg and "line 2" in msg and "'|'" in msg


def test_label_and_labels_columns_together_are_refused(tmp_path):
    p = _csv(tmp_path, "path,label,labels\n0.png,cat,cat|dog\n1.png,dog,dog\n")
    with pytest.raises(DataError, match="both a 'label' and a 'labels' column"):
        resolve(str(p))


def test_rows_of_one_path_are_one_image_and_one_split(tmp_path):
    p = _csv(tmp_path, "path,labels,split\n0.png,cat,train\n0.png,dog,train\n1.png,dog,train\n2.png,cat,val\n")
    assert _by_name(resolve(str(p)))["0.png"] == ("cat|dog", 0, (0, 1), "train")
    p.write_text("path,labels,split\n0.png,cat,train\n0.png,dog,val\n1.png,dog,train\n")
    with pytest.raises(DataError, match="in split 'train' and in 'val'"):
        resolve(str(p))
    # --multi-label reads a long single-label manifest (one row per image and label) the same way.
    p.write_text("path,label,split\n0.png,cat,train\n0.png,dog,train\n1.png,dog,train\n2.png,cat,val\n")
    assert not resolve(str(p)).multi_label
    src = resolve(str(p), multi_label=True)
    assert src.multi_label and _by_name(src)["0.png"] == ("cat|dog", 0, (0, 1), "train") and len(src.items) == 3


def _label_folders(root: Path) -> Path:
    """a.png in cat/ and (symlink) dog/; b.png in cat/ and (hard link) bird/; c.png in dog/ and a
    byte-identical copy in bird/; d.png and e.png only in bird/ and dog/."""
    a = _png(root / "cat" / "a.png", 1)
    b = _png(root / "cat" / "b.png", 2)
    c = _png(root / "dog" / "c.png", 3)
    (root / "dog").mkdir(exist_ok=True)
    os.symlink(a, root / "dog" / "a_link.png")
    (root / "bird").mkdir(exist_ok=True)
    os.link(b, root / "bird" / "b_hard.png")
    shutil.copyfile(c, root / "bird" / "c_copy.png")
    _png(root / "bird" / "d.png", 4)
    _png(root / "dog" / "e.png", 5)
    return root


def test_label_folders_group_links_and_identical_bytes(tmp_path):
    root = _label_folders(tmp_path / "tags")
    plain = resolve(str(root), val_split=0)
    assert not plain.multi_label and len(plain.items) == 8  # without the flag: as before, one row per entry
    src = resolve(str(root), val_split=0, multi_label=True)
    assert src.multi_label and src.classes == ["bird", "cat", "dog"]
    got = {Path(p).name: lab for p, lab in zip(src.items["path"], src.items["label"])}
    # Each image under its first entry that is not a symlink (bird/ sorts before cat/ and dog/).
    want = {"a.png": "cat|dog", "b_hard.png": "bird|cat", "c_copy.png": "bird|dog", "d.png": "bird", "e.png": "dog"}
    assert got == want
    assert "3 more entries" in src.description


def test_split_folders_keep_a_copy_in_two_splits_apart_and_the_preflight_calls_it_a_leak(tmp_path):
    root = tmp_path / "tags"
    a = _png(root / "train" / "cat" / "a.png", 1)
    _png(root / "train" / "dog" / "b.png", 2)
    _png(root / "val" / "cat" / "c.png", 3)
    (root / "val" / "dog").mkdir(parents=True)
    shutil.copyfile(a, root / "val" / "dog" / "a_copy.png")
    src = resolve(str(root), multi_label=True)
    assert len(src.items) == 4
    report = preflight.check(src, progress=False, cache=False)
    assert len(report.leaks) == 1 and report.leaks[0].path_b.endswith("a_copy.png")
    assert not any("labelled twice" in w for w in report.warnings)
    items, _ = preflight.apply_leak_policy(report, "drop")
    assert len(items) == 3 and report.n_dropped == 1 and report.n_usable == 3
    assert report.multilabel["images"] == {"train": 2, "val": 1} and report.multilabel["dropped_images"] == {"val": 1}
    assert "  dropped       0       1  (leaked copies" in report.to_text()


def test_multilabel_split_keeps_labels_in_val_and_is_seeded():
    rng = np.random.default_rng(0)
    names = [f"l{i}" for i in range(8)]
    # Labels of very different frequency: l0 on most images, l7 on two.
    lists = [[n for j, n in enumerate(names[:6]) if rng.random() < 0.5 / (j + 1)] for _ in range(60)]
    lists += [["l0", "l6"], ["l6"], ["l6", "l1"], ["l7", "l0"], ["l7"]]
    keys = [f"img/{i}.png" for i in range(len(lists))]
    a = multilabel_split(keys, lists, 0.2, seed=3)
    assert a == multilabel_split(keys, lists, 0.2, seed=3)
    assert a != multilabel_split(keys, lists, 0.2, seed=4)
    for lab in names:
        having = [s for s, labs in zip(a, lists) if lab in labs]
        if len(having) >= 2:
            assert "val" in having and "train" in having, lab
    assert 0.1 < a.count("val") / len(a) < 0.3


def test_multilabel_split_repairs_a_label_hidden_under_rarer_ones():
    # 'a' is never an image's rarest label on 2 of its 3 images; stratified alone, 'a' gets no val image.
    lists = [["a", "b"], ["a", "c"], ["a"], ["d"], ["d"], ["d"]]
    out = multilabel_split([str(i) for i in range(6)], lists, 0.3, seed=0)
    assert out[2] == "val" and out[0] == out[1] == "train" and out[3:].count("val") == 1


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    p = make_multilabel_csv(tmp_path_factory.mktemp("ml"), n=24, seed=1)
    return p, resolve(str(p))


def test_the_maker_gives_zero_to_three_labels_of_four(made):
    p, src = made
    assert src.classes == list(LABELS)
    sizes = [len(ids) for ids in src.items["label_ids"]]
    assert sorted(set(sizes)) == [0, 1, 2, 3]
    truth = read_truth(p)
    assert {p: set(lab.split("|")) - {""} for p, lab in zip(src.items["path"], src.items["label"])} == truth


@pytest.mark.parametrize("cache", [False, "mem"])
def test_make_dataset_yields_the_manifests_multi_hot_labels(made, cache):
    from tlkit.data.pipeline import make_dataset

    p, src = made
    truth = read_truth(p)
    for split in ("train", "val"):
        items = src.items[src.items["split"] == split]
        want = np.array([[float(c in truth[q]) for c in src.classes] for q in items["path"]], dtype=np.float32)
        ds = make_dataset(src, split, image_size=(16, 16), batch_size=5, training=False, cache=cache)
        assert ds.element_spec[1].shape.as_list() == [None, 4] and ds.element_spec[1].dtype.name == "float32"
        got = np.concatenate([y.numpy() for _, y in ds])
        np.testing.assert_array_equal(got, want)


def test_training_pipeline_keeps_each_images_labels(made):
    """The epoch-keyed training pipeline shuffles images and labels together: each image's pixels come
    with its own row (the shapes are drawn in their colours, so a label can be read off the pixels)."""
    from tlkit.data.pipeline import epoch_variable, make_dataset

    _, src = made
    ds = make_dataset(
        src, "train", image_size=(32, 32), batch_size=4, training=True, augment=None, epoch=epoch_variable()
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    x, y = np.concatenate(xs), np.concatenate(ys)
    square_red = ((x[..., 0] > 200) & (x[..., 1] < 80) & (x[..., 2] < 80)).sum(axis=(1, 2)) > 20
    np.testing.assert_array_equal(square_red, y[:, src.classes.index("square")] == 1)
    assert y.sum() == multi_hot(src.items[src.items["split"] == "train"]["label_ids"], 4).sum()


@pytest.mark.parametrize("cache", [False, "mem"])
def test_sharding_pads_with_empty_multi_hot_batches(made, cache):
    from tlkit.data.pipeline import make_dataset
    from tlkit.data.sharding import Shard

    _, src = made
    n_val = int((src.items["split"] == "val").sum())
    batch = n_val + 1  # one global batch, shared by n_val + 1 workers: the last worker's share is empty
    ds = make_dataset(
        src, "val", image_size=(16, 16), batch_size=batch, training=False, cache=cache, shard=Shard(n_val, n_val + 1)
    )
    shapes = [(tuple(x.shape), tuple(y.shape), y.dtype.name) for x, y in ds]
    assert shapes == [((0, 16, 16, 3), (0, 4), "float32")]


def test_preflight_reports_positives_label_counts_pairs_and_a_label_missing_from_val(tmp_path):
    rows = ["path,labels,split", "0.png,a|b,train", "1.png,a,train", "2.png,,train", "3.png,b|c,train", "4.png,a|b,val"]
    for i in range(5):
        _png(tmp_path / f"{i}.png", i)
    shutil.copyfile(tmp_path / "1.png", tmp_path / "5.png")  # the same bytes with other labels, same split
    rows.append("5.png,c,train")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    src = resolve(str(tmp_path / "m.csv"))
    report = preflight.check(src, progress=False, cache=False)
    preflight.apply_leak_policy(report, "drop")
    assert report.class_counts == {"train": {"a": 2, "b": 2, "c": 2}, "val": {"a": 1, "b": 1, "c": 0}}
    d = report.to_dict()
    assert d["multi_label"] is True and d["n_usable"] == 6
    assert d["multilabel"]["images"] == {"train": 5, "val": 1}
    assert d["multilabel"]["labels_per_image"]["train"] == {"0": 1, "1": 2, "2+": 2}
    assert d["multilabel"]["label_pairs"][0] == {"labels": ["a", "b"], "images": 2}
    assert any("label 'c' has no positive in val" in w for w in report.warnings)
    assert len(report.duplicates) == 1 and not any("labelled twice" in w for w in report.warnings)
    text = report.to_text()
    assert "train: 5 images: 1 with no label, 2 with one, 2 with two or more" in text
    assert "most frequent label pairs: a+b 2, b+c 1" in text


def test_prepare_and_tfds_refuse_multi_label_in_one_line(tmp_path, made):
    from tlkit.data.prepare import prepare

    p, _ = made
    with pytest.raises(DataError, match="does not work with tlkit prepare"):
        prepare(str(p), str(tmp_path / "out"), size=[16, 16], progress=False)
    with pytest.raises(DataError, match="does not work with tfds"):
        resolve("tfds:mnist", multi_label=True)


def test_remap_gives_ids_of_a_runs_longer_label_list(tmp_path):
    from tlkit.data.multilabel import remap

    p = _csv(tmp_path, "path,labels\n0.png,cat|dog\n1.png,\n2.png,dog\n")
    src = resolve(str(p), val_split=0)
    out = remap(src.items, src.classes, ["bird", "cat", "dog"])
    assert out["label_ids"].tolist() == [(1, 2), (), (2,)] and out["label_id"].tolist() == [1, -1, 2]
    assert src.items["label_ids"].tolist() == [(0, 1), (), (1,)]  # the source's own items unchanged
