"""tlkit._io: atomic writes, and the only module that renames files into place."""

import json
import re
from pathlib import Path

import pytest

import tlkit
from tlkit import _io
from tlkit.finetune.rundir import is_temp_name


def test_text_json_bytes_written_whole(tmp_path):
    assert _io.write_text_atomic(tmp_path / "a.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert json.loads(_io.write_json_atomic(tmp_path / "b.json", {"x": [1, 2]}).read_text()) == {"x": [1, 2]}
    assert _io.write_bytes_atomic(tmp_path / "c.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.bin"]  # no temporaries left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), _io.atomic_path(target, suffix=".keras") as tmp:
        assert tmp.name.endswith(".tmp.keras") and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_temporary_folder_is_removed_too(tmp_path):
    with pytest.raises(KeyboardInterrupt), _io.atomic_path(tmp_path / "out") as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("1")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_are_unique_hidden_and_known_to_the_run_directory(tmp_path):
    names = {_io.temp_path(tmp_path / "last.keras", ".keras").name for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith(".last.keras.") and is_temp_name(n) for n in names)
    assert is_temp_name(_io.temp_path(tmp_path / "state.json").name)


def test_move_into_place_replaces_a_file_and_an_empty_folder(tmp_path):
    (tmp_path / "new").write_text("n")
    (tmp_path / "old").write_text("o")
    _io.move_into_place(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old").read_text() == "n" and not (tmp_path / "new").exists()
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "f").write_text("1")
    _io.move_into_place(tmp_path / "d1", tmp_path / "d2")
    assert (tmp_path / "d2" / "f").read_text() == "1"


def test_no_other_module_renames_files_into_place():
    root = Path(tlkit.__file__).parent
    pattern = re.compile(r"\bos\.(replace|rename)\(|\.rename\(|\bshutil\.move\(")
    hits = [
        f"{p.relative_to(root)}:{i}: {line.strip()}"
        for p in sorted(root.rglob("*.py"))
        if p.name != "_io.py"
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
