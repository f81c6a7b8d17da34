"""Preflight: planted bad files, duplicates and leakage are found, listed, skipped; `tlkit check-data`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.cli import main as cli
from tlkit.data import pipeline as data
from tlkit.data import preflight
from tlkit.data.pipeline import DataError
from tlkit.errors import ConfigError


def _img(path: Path, seed: int, size: int = 16, fmt: str = "PNG") -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png_header(w: int, h: int) -> bytes:
    return PNG_SIG + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def _plant(root: Path) -> dict:
    """train/ and val/ folders of cat and dog, with one of each kind of bad file and two duplicates."""
    for split, n, s0 in (("train", 5, 0), ("val", 2, 100)):
        for k, cls in enumerate(("cat", "dog")):
            for i in range(n):
                _img(root / split / cls / f"{cls[0]}{i}.png", s0 + 10 * k + i)
    bad = {}

    def plant(rel: str, content: bytes, reason: str) -> None:
        p = root / rel
        p.write_bytes(content)
        bad[str(p)] = reason

    plant("train/cat/empty.jpg", b"", "empty")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    plant("train/cat/half.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated")
    plant("train/dog/notes.jpg", b"these are my notes, not a picture\n", "not_an_image")
    plant("val/cat/noise.png", np.random.default_rng(8).bytes(400), "not_an_image")
    # a valid PNG header over a broken compressed stream
    garbage = b"\x78\x9c" + np.random.default_rng(3).bytes(200)
    plant("train/dog/broken.png", _png_header(16, 16) + _chunk(b"IDAT", garbage) + _chunk(b"IEND", b""), "corrupt")
    # a decompression bomb: the header declares 20000x20000, the file is a few bytes
    plant(
        "val/dog/bomb.png",
        _png_header(20000, 20000) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""),
        "too_large",
    )
    leak = shutil.copyfile(root / "train/dog/d0.png", root / "val/dog/copy_of_d0.png")
    dup = shutil.copyfile(root / "train/cat/c1.png", root / "train/cat/c1_again.png")
    (root / "train/cat/notes.txt").write_text("not an image by name: ignored, and listed")
    return {
        "bad": bad,
        "leak": (str(root / "train/dog/d0.png"), str(leak)),
        "dup": [str(root / "train/cat/c1.png"), str(dup)],
    }


@pytest.fixture()
def planted(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "planted"
    return root, _plant(root)


def test_report_lists_exactly_the_planted_files(planted):
    root, truth = planted
    src = data.resolve(str(root))
    assert src.split_method == "folders"
    report = preflight.check(src, progress=False)
    assert {b.path: b.reason for b in report.bad_files} == truth["bad"]
    assert all(b.detail for b in report.bad_files if b.reason != "not_an_image")
    assert {(b.path, b.split, b.label) for b in report.bad_files} >= {
        (str(root / "val/dog/bomb.png"), "val", "dog"),
        (str(root / "train/cat/empty.jpg"), "train", "cat"),
    }
    assert [(lk.path_a, lk.split_a, lk.path_b, lk.split_b, lk.label_b) for lk in report.leaks] == [
        (*truth["leak"][:1], "train", truth["leak"][1], "val", "dog")
    ]
    assert [(g.split, g.paths) for g in report.duplicates] == [("train", truth["dup"])]
    assert [Path(i["path"]).name for i in report.ignored] == ["notes.txt"]
    # usable counts: train cat 5 + copy, dog 5; val cat 2, dog 2 + leak copy
    assert report.class_counts == {"train": {"cat": 6, "dog": 5}, "val": {"cat": 2, "dog": 3}}
    assert (report.n_files, report.n_skipped, report.n_usable) == (22, 6, 16)
    assert report.image_sizes["height"] == {"min": 16, "median": 16.0, "max": 16}
    assert report.modes == {"RGB": 16} and report.formats == {"PNG": 16}

    clean = report.clean_items()
    assert len(clean) == 16 and not set(clean["path"]) & set(truth["bad"])
    assert truth["leak"][1] not in set(report.clean_items(drop_leaks=True)["path"])
    assert len(report.clean_items(drop_leaks=True)) == 15


def test_report_text_and_skipped_csv(planted, tmp_path: Path):
    root, truth = planted
    report = preflight.check(data.resolve(str(root)), progress=False)
    text = report.to_text()
    assert "checked 22 files" in text and "16 usable, 6 skipped" in text
    for path, reason in truth["bad"].items():
        assert any(path in line and reason in line for line in text.splitlines()), path
    assert f"val {truth['leak'][1]} = train {truth['leak'][0]}" in text
    assert " = ".join(truth["dup"]) in text
    assert "leakage: 1 file(s)" in text and "notes.txt" in text
    out = tmp_path / "skipped.csv"
    report.write_skipped_csv(out)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {r["path"]: r["reason"] for r in rows} == truth["bad"]
    assert json.loads(json.dumps(report.to_dict()))["n_skipped"] == 6


def test_pipeline_runs_on_the_clean_items(planted):
    root, truth = planted
    src = data.resolve(str(root))
    report = preflight.check(src, progress=False)
    clean = dataclasses.replace(src, items=report.clean_items())
    for split, n in (("train", 11), ("val", 5)):
        ds = data.make_dataset(clean, split, image_size=(8, 8), batch_size=4, training=split == "train")
        assert sum(int(y.shape[0]) for _, y in ds) == n


def test_class_without_usable_files_is_named(tmp_path: Path):
    root = tmp_path / "d"
    for i in range(3):
        _img(root / "good" / f"{i}.png", i)
    (root / "ghost").mkdir()
    (root / "ghost" / "a.jpg").write_bytes(b"")
    (root / "ghost" / "b.png").write_text("text")
    with pytest.raises(DataError, match=r"class\(es\) 'ghost' have no usable image.*1 empty, 1 not_an_image"):
        preflight.check(data.resolve(str(root)), progress=False)


def test_manifest_rows_with_missing_files_are_skipped(tmp_path: Path):
    files = [_img(tmp_path / "img" / f"{i}.png", i) for i in range(4)]
    rows = ["path,label,split"] + [
        f"img/{f.name},{'ab'[i % 2]},{'train' if i < 2 else 'val'}" for i, f in enumerate(files)
    ]
    rows.append("img/gone.png,a,train")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    report = preflight.check(data.resolve(str(tmp_path / "m.csv")), progress=False)
    assert [(b.path, b.reason) for b in report.bad_files] == [(str(tmp_path / "img" / "gone.png"), "missing")]
    assert report.class_counts == {"train": {"a": 1, "b": 1}, "val": {"a": 1, "b": 1}}


def test_imbalance_and_missing_val_class_warn(tmp_path: Path):
    root = tmp_path / "d"
    for i in range(10):
        _img(root / "train" / "many" / f"{i}.png", i)
    _img(root / "train" / "few" / "0.png", 50)
    _img(root / "val" / "many" / "0.png", 60)
    report = preflight.check(data.resolve(str(root)), progress=False)
    text = report.to_text()
    assert "class 'few' has no validation images" in text
    assert "imbalanced in train (1 to 10 images)" in text and "--class-weight auto" in text


# --------------------------------------------------------------------------- the CLI


def test_check_data_cli_text(planted, capsys):
    root, truth = planted
    assert cli.main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    # The counts finetune uses with its default --leaks drop: the leaked copy is counted apart.
    assert "15 usable, 6 skipped (left out; the run goes on), 1 dropped" in out
    assert all(p in out for p in truth["bad"]) and truth["leak"][1] in out


def test_check_data_cli_json_and_strict(planted, capsys, tmp_path: Path):
    root, truth = planted
    skipped = tmp_path / "skipped.csv"
    assert cli.main(["check-data", str(root), "--json", "--strict", "--skipped-csv", str(skipped)]) == 1
    rep = json.loads(capsys.readouterr().out)
    # The counts finetune uses with its default --leaks drop: the leaked val/dog copy is counted apart.
    assert rep["class_counts"] == {"train": {"cat": 6, "dog": 5}, "val": {"cat": 2, "dog": 2}}
    assert rep["dropped_counts"] == {"val": {"dog": 1}} and rep["leak_policy"] == "drop"
    assert {b["path"]: b["reason"] for b in rep["bad_files"]} == truth["bad"]
    assert [(lk["path_a"], lk["path_b"]) for lk in rep["leaks"]] == [truth["leak"]]
    assert rep["duplicates"][0]["paths"] == truth["dup"]
    assert (rep["n_files"], rep["n_usable"], rep["n_skipped"], rep["n_dropped"]) == (22, 15, 6, 1)
    assert len(skipped.read_text().splitlines()) == 7


def test_check_data_cli_seeded_split(tmp_path: Path, capsys):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(10):
            _img(root / cls / f"{i}.png", (0 if cls == "a" else 100) + i)
    assert cli.main(["check-data", str(root), "--json", "--val-split", "0.3", "--seed", "4"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["class_counts"] == {"train": {"a": 7, "b": 7}, "val": {"a": 3, "b": 3}}
    assert rep["split_method"] == "stratified"


def test_check_data_cli_unusable_data_exits_2(tmp_path: Path, capsys):
    assert cli.main(["check-data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "tlkit check-data: error: data path" in err and "does not exist" in err


# --------------------------------------------------------------------------- odd files and the leak policy


def test_non_regular_files_are_named_without_opening_them(tmp_path: Path):
    import os
    import socket
    import tempfile
    import threading

    from tlkit.data.images import ImageError, load_rgb

    root = tmp_path / "d"
    for cls in ("cat", "dog"):
        for i in range(3):
            _img(root / cls / f"{i}.png", 10 * len(cls) + i)
    os.mkfifo(root / "cat" / "pipe.png")
    (root / "dog" / "gone.jpg").symlink_to("nowhere.jpg")
    (root / "dog" / "loop.png").symlink_to("loop.png")
    short = Path(tempfile.mkdtemp(prefix="tlkit-s-"))  # sockets need a short path
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(short / "s.png"))
    (root / "cat" / "s.png").symlink_to(short / "s.png")
    (tmp_path / "dir.png").mkdir()
    out: dict = {}

    def work() -> None:  # in a thread: a FIFO that is opened blocks forever, and the test must fail, not hang
        try:
            out["report"] = preflight.check(data.resolve(str(root)), progress=False)
            for p in (tmp_path / "dir.png", tmp_path / "nothing.png"):
                try:
                    load_rgb(p)
                except ImageError as exc:
                    out[p.name] = (exc.reason, exc.detail)
        except BaseException as exc:  # noqa: BLE001  (shown by the assertion below)
            out["error"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(60)
    sock.close()
    shutil.rmtree(short, ignore_errors=True)
    assert not t.is_alive(), "a non-regular file was opened (blocked on the FIFO)"
    assert "error" not in out, out.get("error")
    got = {Path(b.path).name: (b.reason, b.detail) for b in out["report"].bad_files}
    assert {k: v[0] for k, v in got.items()} == {
        "pipe.png": "not_a_file",
        "gone.jpg": "dangling_link",
        "loop.png": "dangling_link",
        "s.png": "not_a_file",
    }
    assert "FIFO" in got["pipe.png"][1] and "nowhere.jpg" in got["gone.jpg"][1]
    assert "loop" in got["loop.png"][1] and "socket" in got["s.png"][1]
    assert out["dir.png"][0] == "not_a_file" and "directory" in out["dir.png"][1]
    assert out["nothing.png"] == ("missing", "no such file")
    assert out["report"].n_usable == 6


def test_leak_policy_drop_keep_fail(planted):
    root, truth = planted
    report = preflight.check(data.resolve(str(root)), progress=False)
    with pytest.raises(ConfigError, match="--leaks must be one of drop, keep, fail"):
        preflight.apply_leak_policy(report, "ignore")

    items, note = preflight.apply_leak_policy(report, "drop")
    assert report.class_counts == {"train": {"cat": 6, "dog": 5}, "val": {"cat": 2, "dog": 2}}
    assert report.dropped == {"val": {"dog": 1}} and report.n_dropped == 1
    assert len(items) == report.n_usable == 15 and truth["leak"][1] not in set(items["path"])
    assert report.n_files == report.n_usable + report.n_skipped + report.n_dropped
    assert note.startswith("--leaks drop: 1 validation file(s)") and "(val: dog 1)" in note
    text = report.to_text()
    assert "15 usable, 6 skipped (left out; the run goes on), 1 dropped" in text
    assert [ln.split()[:3] for ln in text.splitlines() if ln.startswith("  dropped")] == [["dropped", "0", "1"]]
    assert [ln.split()[:3] for ln in text.splitlines() if ln.startswith("  total")] == [["total", "11", "4"]]
    assert text.endswith(note) and "remove the copies" not in text and "left out by --leaks drop" in text
    again, _ = preflight.apply_leak_policy(report, "drop")  # applying twice changes nothing
    assert again.equals(items) and report.n_dropped == 1 and report.class_counts["val"]["dog"] == 2

    items, note = preflight.apply_leak_policy(report, "keep")
    assert report.class_counts["val"] == {"cat": 2, "dog": 3} and report.dropped == {} and len(items) == 16
    assert "--leaks keep: 1 validation file(s)" in note
    assert any("kept (--leaks keep)" in w for w in report.warnings)
    rep = report.to_dict()
    assert (rep["leak_policy"], rep["n_dropped"], rep["n_usable"]) == ("keep", 0, 16)

    with pytest.raises(DataError) as e:
        preflight.apply_leak_policy(report, "fail")
    msg = str(e.value)
    assert "1 validation file(s)" in msg and "--leaks fail" in msg and "--leaks drop" in msg
    assert truth["leak"][1] in msg


def test_leak_policy_without_leaks_says_nothing(tmp_path: Path):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        for i in range(4):
            _img(root / cls / f"{i}.png", (0 if cls == "a" else 50) + i)
    report = preflight.check(data.resolve(str(root)), progress=False)
    items, note = preflight.apply_leak_policy(report, "fail")
    assert note == "" and len(items) == 8 and report.n_dropped == 0


def test_a_second_check_reads_no_unchanged_file_and_rechecks_a_changed_one(tmp_path, monkeypatch):
    import os

    from tlkit.data import pipeline as tldata
    from tlkit.data import preflight

    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "cache"))
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    from tlkit.data import file_checks

    # Files written within 2 s of their check are "racy" and not remembered; these were written just
    # now, so the test lowers that margin (and checks it at the end).
    monkeypatch.setattr(file_checks, "RACY_NS", 0)
    old = 1_600_000_000
    for f in root.rglob("*.png"):
        os.utime(f, (old, old))
    source = tldata.resolve(str(root), val_split=0.25, seed=0)
    first = preflight.check(source, progress=False)
    assert first.n_reused == 0 and first.n_skipped == 0
    calls: list[str] = []
    real = preflight.inspect_file
    monkeypatch.setattr(preflight, "inspect_file", lambda p: calls.append(p) or real(p))
    second = preflight.check(source, progress=False)
    assert calls == [] and second.n_reused == 8
    assert second.to_dict()["class_counts"] == first.to_dict()["class_counts"]
    assert [d.sha256 for d in second.duplicates] == [d.sha256 for d in first.duplicates]
    # Same path, same size, new bytes, and the old modification time put back: still checked again.
    target = root / "a" / "1.png"
    size = target.stat().st_size
    target.write_bytes(b"x" * size)
    os.utime(target, (old, old))
    third = preflight.check(source, progress=False)
    assert [os.path.realpath(c) for c in calls] == [os.path.realpath(target)]
    assert [b.reason for b in third.bad_files] == ["not_an_image"] and third.n_reused == 7
    assert "7 unchanged since an earlier check" in third.to_text()
    # With the real margin, a file written a moment ago is read again next time, whatever its times say.
    monkeypatch.setattr(file_checks, "RACY_NS", 2_000_000_000)
    target.write_bytes(b"y" * size)
    os.utime(target, (old, old))
    preflight.check(source, progress=False)
    calls.clear()
    preflight.check(source, progress=False)
    assert [os.path.realpath(c) for c in calls] == [os.path.realpath(target)]
