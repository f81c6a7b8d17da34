"""``tlkit check-data`` on multi-label data, as the user runs it: a CSV with a ``labels`` column, and
label folders with ``--multi-label``."""

from __future__ import annotations

import json
import os

from conftest import assert_one_line_error, tlkit
from multilabel_data import make_multilabel_csv


def test_check_data_prints_positives_per_label_and_refuses_a_bad_manifest_in_one_line(tmp_path):
    csv_path = make_multilabel_csv(tmp_path, n=20, seed=0, split=True)
    r = tlkit("check-data", str(csv_path), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    # The maker's image i has i % 4 shapes; every fifth is val: 16 train, 4 val images.
    assert any("4 labels, 20 images (5 with none), multi-label" in ln for ln in lines)
    r_json = tlkit("check-data", str(csv_path), "--json", cwd=tmp_path, timeout=120)
    report = json.loads(r_json.stdout)
    counts = report["class_counts"]
    for label in ("disc", "square", "stripe", "triangle"):
        row = next(ln for ln in lines if ln.split()[:1] == [label])
        assert row.split()[1:] == [str(counts["train"][label]), str(counts["val"][label])]
    assert sum(counts["train"].values()) == sum(i % 4 for i in range(20) if i % 5 != 4)
    assert report["multilabel"]["images"] == {"train": 16, "val": 4}
    assert "train: 16 images: 4 with no label, 4 with one, 8 with two or more" in lines

    bad = tmp_path / "bad.csv"
    bad.write_text("path,labels\nimages/0000.png,disc;square\nimages/0001.png,disc\n")
    line = assert_one_line_error(tlkit("check-data", str(bad), cwd=tmp_path, timeout=120))
    assert "line 2" in line and "'|'" in line


def test_check_data_multi_label_folders_merge_a_linked_image(tmp_path):
    make_multilabel_csv(tmp_path, n=8, seed=0)
    tags = tmp_path / "tags"
    for label, picks in (("a", range(0, 6)), ("b", range(3, 8))):
        (tags / label).mkdir(parents=True)
        for i in picks:
            os.link(tmp_path / "images" / f"{i:04d}.png", tags / label / f"{i}.png")
    r = tlkit("check-data", str(tags), "--multi-label", "--val-split", "0", "--json", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["class_counts"] == {"train": {"a": 6, "b": 5}}
    assert report["multilabel"]["images"] == {"train": 8}
    assert report["multilabel"]["label_pairs"] == [{"labels": ["a", "b"], "images": 3}]
    plain = json.loads(tlkit("check-data", str(tags), "--val-split", "0", "--json", cwd=tmp_path, timeout=120).stdout)
    assert plain["n_usable"] == 11 and "multilabel" not in plain
