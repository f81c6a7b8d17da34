"""Class names through the installed command: one Unicode spelling per class, and names an export
could not write refused when the data is read, before any training (issue 19)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, assert_one_line_error, tlkit
from PIL import Image

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def _images(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = folder / f"{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def _counts(report: dict, name: str) -> int:
    return sum(split.get(name, 0) for split in report["class_counts"].values())


def test_folders_in_nfc_and_nfd_are_one_class_with_a_warning(tmp_path: Path):
    assert NFC != NFD  # two folders on disk
    _images(tmp_path / "data" / NFC, 3, seed=1)
    _images(tmp_path / "data" / NFD, 2, seed=2)
    _images(tmp_path / "data" / "dog", 4, seed=3)
    assert len(list((tmp_path / "data").iterdir())) == 3

    result = tlkit("check-data", "data", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == [NFC, "dog"]
    assert _counts(report, NFC) == 5  # both folders' images
    assert _counts(report, "dog") == 4

    text = tlkit("check-data", "data", cwd=tmp_path, timeout=120)
    assert text.returncode == 0, text.stderr
    warning = [ln for ln in (text.stdout + text.stderr).splitlines() if "different Unicode forms" in ln]
    assert len(warning) == 1, text.stdout + text.stderr
    assert "(3 file(s), NFC)" in warning[0] and "(2 file(s), NFD)" in warning[0] and "(5 files)" in warning[0]


def test_csv_labels_in_nfc_and_nfd_are_one_class_with_a_warning(tmp_path: Path):
    paths = _images(tmp_path / "img", 6, seed=4)
    labels = [NFC, NFC, NFD, "dog", "dog", "dog"]
    rows = "".join(f"{p.name},{lab}\n" for p, lab in zip(paths, labels))
    (tmp_path / "img" / "labels.csv").write_text("path,label\n" + rows, encoding="utf-8")

    result = tlkit("check-data", "img/labels.csv", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == [NFC, "dog"]
    assert _counts(report, NFC) == 3
    merged = [w for w in report["warnings"] if "different Unicode forms" in w]
    assert len(merged) == 1 and "(2 file(s), NFC)" in merged[0] and "(1 file(s), NFD)" in merged[0], report["warnings"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("two\nlines", "contains a line break"),
        ("tab\there", "contains a control character"),
        ("   ", "only whitespace"),
    ],
)
def test_check_data_refuses_a_class_folder_an_export_could_not_write(tmp_path: Path, name: str, why: str):
    _images(tmp_path / "data" / name, 2, seed=5)
    _images(tmp_path / "data" / "dog", 2, seed=6)
    line = assert_one_line_error(tlkit("check-data", "data", cwd=tmp_path, timeout=120))
    assert ascii(name) in line and why in line and "rename the class folder" in line, line


def test_csv_label_with_a_line_break_is_refused(tmp_path: Path):
    paths = _images(tmp_path / "img", 4, seed=7)
    rows = f'{paths[0].name},"a\nb"\n{paths[1].name},"a\nb"\n{paths[2].name},dog\n{paths[3].name},dog\n'
    (tmp_path / "img" / "labels.csv").write_text("path,label\n" + rows, encoding="utf-8")
    line = assert_one_line_error(tlkit("check-data", "img/labels.csv", cwd=tmp_path, timeout=120))
    assert "'a\\nb'" in line and "contains a line break" in line and "label column" in line, line


@pytest.mark.slow
def test_finetune_refuses_a_newline_class_before_training(tmp_path: Path):
    _images(tmp_path / "data" / "two\nlines", 4, seed=8)
    _images(tmp_path / "data" / "dog", 4, seed=9)
    result = tlkit("finetune", "--data", "data", *TINY_RUN, "--epochs", "1", "--name", "r", cwd=tmp_path, timeout=300)
    line = assert_one_line_error(result)
    assert "'two\\nlines'" in line and "contains a line break" in line, line
    run = tmp_path / "runs" / "r"
    assert not (run / "history.csv").exists() and not (run / "last.keras").exists()
