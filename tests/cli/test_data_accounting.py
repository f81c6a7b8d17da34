"""Honest data accounting, through the installed command: every count tlkit prints is the count it used.

Symbolic-link loops are read once, files that are not regular files are named for what they
are (and never opened: a FIFO would block), the leak policy's effect is printed and equals
the run's own files, near-duplicate class names are warned about, and `evaluate --data` on
a folder without splits says it evaluated all of it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, assert_one_line_error, tlkit
from PIL import Image

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow


def _pngs(folder: Path, n: int, seed: int, size: int = 16) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _table(text: str) -> dict[str, dict[str, int]]:
    """The class-count table of a printed data report: {row name: {split: count}}."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["class"])
    splits = lines[start].split()[1:]
    rows = {}
    for ln in lines[start + 1 :]:
        parts = ln.split()
        if not ln.startswith("  ") or len(parts) < len(splits) + 1 or not parts[1].isdigit():
            break
        rows[parts[0]] = {s: int(v) for s, v in zip(splits, parts[1 : 1 + len(splits)])}
    return rows


# --------------------------------------------------------------------------- links and odd files


def test_symlink_loop_and_linked_file_are_counted_once(tmp_path: Path):
    root = tmp_path / "pets"
    _pngs(root / "cat", 4, seed=0)
    _pngs(root / "dog", 4, seed=1)
    os.symlink(".", root / "dog" / "loop")  # dog/loop/loop/... : followed ~40 levels before the fix
    os.symlink("..", root / "cat" / "up")  # the data root, from inside a class
    os.symlink("0.png", root / "cat" / "same.png")  # one file, two names
    r = tlkit("check-data", root, "--json", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["n_files"] == 8 and rep["n_usable"] == 8
    assert {s: sum(c.values()) for s, c in rep["class_counts"].items()} == {"train": 6, "val": 2}
    assert {c: sum(rep["class_counts"][s][c] for s in rep["class_counts"]) for c in ("cat", "dog")} == {
        "cat": 4,
        "dog": 4,
    }
    assert rep["duplicates"] == [] and rep["leaks"] == []
    why = {Path(i["path"]).name: i["why"] for i in rep["ignored"]}
    assert set(why) == {"loop", "up", "same.png"}
    assert "not followed" in why["loop"] and "not followed" in why["up"] and "counted once" in why["same.png"]


def test_fifo_dangling_link_socket_and_folder_get_their_own_reasons(tmp_path: Path):
    root = tmp_path / "odd"
    _pngs(root / "cat", 3, seed=0)
    _pngs(root / "dog", 3, seed=1)
    os.mkfifo(root / "cat" / "pipe.png")  # opening it without O_NONBLOCK blocks forever
    os.symlink("nowhere.png", root / "dog" / "dangling.png")
    short = Path(tempfile.mkdtemp(prefix="tlkit-sock-"))  # a socket's path must stay under ~100 bytes
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(short / "sock.jpg"))
    (root / "cat" / "folder.jpg").mkdir()  # a folder named like an image, listed by a manifest below
    manifest = tmp_path / "m.csv"
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(root.glob("*/*.png")) if p.name[0].isdigit()]
    rows += [
        f"{root / 'cat' / 'pipe.png'},cat",
        f"{root / 'dog' / 'dangling.png'},dog",
        f"{short / 'sock.jpg'},dog",
        f"{root / 'cat' / 'folder.jpg'},cat",
    ]
    manifest.write_text("\n".join(rows) + "\n")
    want = {
        "pipe.png": "not_a_file",
        "dangling.png": "dangling_link",
        "sock.jpg": "not_a_file",
        "folder.jpg": "not_a_file",
    }
    try:
        r = tlkit("check-data", manifest, "--skipped-csv", tmp_path / "skipped.csv", cwd=tmp_path, timeout=120)
    finally:
        sock.close()
        shutil.rmtree(short, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [ln for ln in r.stdout.splitlines() if ln.split()[:1] == ["missing"]]  # the old reason for all four
    assert "checked 10 files" in r.stdout and "6 usable, 4 skipped" in r.stdout
    with open(tmp_path / "skipped.csv") as f:
        got = {Path(row["path"]).name: row["reason"] for row in csv.DictReader(f)}
    assert got == want
    lines = {name: next(ln for ln in r.stdout.splitlines() if ln.strip().endswith(")") and name in ln) for name in want}
    assert "FIFO" in lines["pipe.png"] and "socket" in lines["sock.jpg"] and "directory" in lines["folder.jpg"]
    assert "nowhere.png" in lines["dangling.png"]


# --------------------------------------------------------------------------- leak policy


def _leaky_folder(root: Path) -> Path:
    """train/val folders where 3 of each class's 5 validation files are copies of training files,
    plus one empty file (skipped)."""
    for k, cls in enumerate(("a", "b")):
        train = _pngs(root / "train" / cls, 6, seed=10 + k, size=32)
        for i, p in enumerate(_pngs(root / "val" / cls, 2, seed=20 + k, size=32)):
            p.rename(p.with_name(f"v{i}.png"))
        for i in range(3):
            shutil.copyfile(train[i], root / "val" / cls / f"copy{i}.png")
    (root / "train" / "a" / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def leaky_runs(tmp_path_factory) -> dict:
    """One tiny finetune per leak policy on the same leaky folder (drop, keep, fail)."""
    work = tmp_path_factory.mktemp("leaks")
    data = _leaky_folder(work / "leaky")
    out = {"work": work, "data": data}
    for policy in ("drop", "keep", "fail"):
        out[policy] = tlkit(
            "finetune",
            "--data",
            data,
            *TINY_RUN,
            "--epochs",
            "1",
            "--finetune-epochs",
            "0",
            "--runs-dir",
            work / "runs",
            "--name",
            policy,
            "--leaks",
            policy,
            cwd=work,
            timeout=300,
        )
    return out


@pytest.mark.parametrize("policy,val_used,dropped", [("drop", 4, 6), ("keep", 10, 0)])
def test_printed_counts_equal_the_runs_files(leaky_runs, policy, val_used, dropped):
    r = leaky_runs[policy]
    assert r.returncode == 0, r.stderr[-3000:]
    run = leaky_runs["work"] / "runs" / policy
    report = json.loads((run / "data_report.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    printed = _table(r.stdout)
    assert printed == _table((run / "data_report.txt").read_text())
    # what was printed == what was used == what the run's files say
    assert printed["total"]["val"] == val_used == metrics["count"] == sum(report["class_counts"]["val"].values())
    assert metrics["split"] == "val"
    for c in ("a", "b"):
        assert printed[c] == {s: report["class_counts"][s][c] for s in ("train", "val")}
    assert report["leak_policy"] == policy and len(report["leaks"]) == 6
    assert report["n_dropped"] == dropped and printed.get("dropped", {"train": 0, "val": 0})["val"] == dropped
    with open(run / "skipped.csv") as f:
        assert [Path(row["path"]).name for row in csv.DictReader(f)] == ["empty.png"]
    assert report["n_skipped"] == 1
    assert report["n_files"] == report["n_usable"] + report["n_skipped"] + report["n_dropped"] == 23
    assert f"{report['n_usable']} usable, 1 skipped" in r.stdout
    if policy == "drop":
        assert report["dropped_counts"] == {"val": {"a": 3, "b": 3}}
        note = next(ln for ln in r.stdout.splitlines() if ln.startswith("--leaks drop:"))
        assert "6 validation file(s)" in note and "left out of this run" in note
        assert "remove the copies" not in r.stdout  # the run already did
    else:
        assert "--leaks keep: 6 validation file(s)" in r.stdout and "inflate" in r.stdout


def test_leaks_fail_exits_2_naming_count_and_flag(leaky_runs):
    line = assert_one_line_error(leaky_runs["fail"])
    assert "6 validation file(s)" in line and "--leaks fail" in line and "--leaks drop" in line


def test_check_data_says_what_finetune_does(leaky_runs):
    work, data = leaky_runs["work"], leaky_runs["data"]
    r = tlkit("check-data", data, "--json", cwd=work, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    run_report = json.loads((work / "runs" / "drop" / "data_report.json").read_text())
    for key in ("class_counts", "dropped_counts", "n_usable", "n_skipped", "n_dropped", "leak_policy"):
        assert rep[key] == run_report[key], key
    fail = tlkit("check-data", data, "--leaks", "fail", cwd=work, timeout=120)
    line = assert_one_line_error(fail)
    assert "6 validation file(s)" in line and "--leaks" in line
    assert "leakage: 6 file(s) identical across splits (--leaks fail stops the run)" in fail.stdout  # listed


def test_evaluate_on_a_folder_without_splits_uses_all_of_it(leaky_runs, tmp_path: Path):
    flat = tmp_path / "flat"
    for cls in ("a", "b"):
        shutil.copytree(leaky_runs["data"] / "val" / cls, flat / cls)  # 5 files each, no split folders
    run = leaky_runs["work"] / "runs" / "drop"
    r = tlkit("evaluate", run, "--data", flat, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    first = r.stdout.splitlines()[0]
    assert first.endswith("on 10 images (all files, tta=none)") and "train" not in first
    assert "no train/val/test split" in r.stdout


# --------------------------------------------------------------------------- labels


def test_csv_labels_differing_in_case_and_whitespace_are_warned(tmp_path: Path):
    files = _pngs(tmp_path / "img", 6, seed=3)
    labels = ["cat", "cat", "Cat ", "dog", "dog", "dog"]
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"img/{f.name},{lab}\n" for f, lab in zip(files, labels)))
    r = tlkit("check-data", tmp_path / "m.csv", "--json", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["classes"] == ["Cat", "cat", "dog"]  # whitespace stripped, case kept
    case = [w for w in rep["warnings"] if "'Cat'" in w and "'cat'" in w]
    assert len(case) == 1 and "differ only in case" in case[0]
    space = [w for w in rep["warnings"] if "'Cat '" in w]
    assert len(space) == 1 and "stripped" in space[0] and "line 4" in space[0]
    text = tlkit("check-data", tmp_path / "m.csv", cwd=tmp_path, timeout=120).stdout
    assert sum(ln.startswith("warning:") and "differ only in case" in ln for ln in text.splitlines()) == 1
