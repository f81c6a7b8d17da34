"""Decode once: the run's preflight judges JPEGs from headers and markers (the input pipeline
decodes them), check-data decodes in full, and remembered results follow file changes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.data import file_checks, preflight
from tlkit.data import pipeline as tldata
from tlkit.data.jpeg_check import jpeg_structure_problem


def _jpeg(seed: int, size: int = 48) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        b, "JPEG", quality=90, exif=Image.Exif()
    )
    return b.getvalue()


def test_every_cut_of_a_jpeg_is_seen_from_its_markers():
    whole = _jpeg(0)
    assert jpeg_structure_problem(whole) is None
    assert jpeg_structure_problem(whole + b"\0" * 100) is None  # padding after the end is fine
    problems = [jpeg_structure_problem(whole[:n]) for n in range(4, len(whole) - 1, 7)]
    assert all(problems), [n for n, p in zip(range(4, len(whole) - 1, 7), problems) if not p]
    assert all("truncated" in p for p in problems[len(problems) // 2 :])  # cut inside the image data


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(file_checks, "RACY_NS", 0)  # files written just now may be remembered
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.jpg").write_bytes(_jpeg(10 * (cls == "b") + i))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "a" / "p.png")
    return root


def _count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = preflight.decode_rgb
    monkeypatch.setattr(preflight, "decode_rgb", lambda f, p, **k: calls.append(str(p)) or real(f, p, **k))
    return calls


def test_run_preflight_decodes_no_jpeg_and_still_reports_a_truncated_one(folder, monkeypatch):
    cut = folder / "b" / "cut.jpg"
    cut.write_bytes(_jpeg(99)[:-300])  # an interrupted copy: header intact, image data cut short
    decodes = _count_decodes(monkeypatch)
    source = tldata.resolve(str(folder), val_split=0.0)
    report = preflight.check(source, progress=False, cache=False)
    assert [Path(p).name for p in decodes] == ["p.png"]  # only the PNG was decoded
    assert [(b.path, b.reason) for b in report.bad_files] == [(str(cut), "truncated")]
    assert "no end-of-image marker" in report.bad_files[0].detail
    assert report.n_usable == 7 and report.image_sizes["height"]["max"] == 48
    assert report.modes == {"RGB": 7} and report.formats == {"JPEG": 6, "PNG": 1}
    # check-data's thorough check decodes everything and finds the same file.
    decodes.clear()
    full = preflight.check(source, progress=False, cache=False, thorough=True)
    assert len(decodes) == 8 and [(b.path, b.reason) for b in full.bad_files] == [(str(cut), "truncated")]
    assert full.to_dict()["class_counts"] == report.to_dict()["class_counts"]
    assert [d.sha256 for d in full.duplicates] == [d.sha256 for d in report.duplicates]


def test_a_changed_jpeg_is_rechecked_and_header_results_do_not_serve_a_thorough_check(folder, monkeypatch):
    source = tldata.resolve(str(folder), val_split=0.0)
    old = 1_600_000_000
    for f in folder.rglob("*.*"):
        os.utime(f, (old, old))
    first = preflight.check(source, progress=False)
    assert first.n_reused == 0 and first.n_skipped == 0
    second = preflight.check(source, progress=False)
    assert second.n_reused == 7
    # Same path, same size, new bytes (cut short and padded with zeros), old times put back.
    target = folder / "a" / "1.jpg"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] + b"\0" * (len(data) - len(data) // 2))
    os.utime(target, (old, old))
    third = preflight.check(source, progress=False)
    assert third.n_reused == 6 and [(b.path, b.reason) for b in third.bad_files] == [(str(target), "truncated")]
    # A thorough check reuses only full decodes: the 5 good JPEGs checked from headers are decoded now,
    # the PNG (decoded in full before) and the bad JPEG (bad either way) are not.
    decodes = _count_decodes(monkeypatch)
    full = preflight.check(source, progress=False, thorough=True)
    assert full.n_reused == 2 and len(decodes) == 5
    assert preflight.check(source, progress=False, thorough=True).n_reused == 7


@pytest.mark.parametrize("progressive", [False, True])
def test_damaged_headers_that_the_decoder_refuses_are_named_and_no_good_file_is(progressive):
    import tensorflow as tf

    rng = np.random.default_rng(3)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(b, "JPEG", progressive=progressive)
    good = b.getvalue()
    sos = good.find(b"\xff\xda")
    refused = named = wrongly = 0
    for _ in range(150):
        d = bytearray(good)
        for p in rng.integers(2, sos + 12, 2):  # two random bytes in the tables, frame and scan headers
            d[p] = rng.integers(0, 256)
        try:
            tf.io.decode_jpeg(bytes(d), channels=3)
            ok = True
        except tf.errors.InvalidArgumentError:
            ok = False
        problem = jpeg_structure_problem(bytes(d))
        refused += not ok
        named += (not ok) and problem is not None
        wrongly += ok and problem is not None
    assert wrongly == 0  # nothing the decoder takes is refused
    assert refused > 40 and named >= 0.95 * refused, (named, refused)  # measured: 97-100%
