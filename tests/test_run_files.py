"""tlkit.finetune.run_files without Keras: checksums, JSON, archives, history (the fast tier)."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from tlkit.finetune import run_files
from tlkit.finetune.rundir import RunDir


def _keras_like(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * 1000)


def test_write_state_records_size_and_sha256_and_rehashes_only_replaced_files(tmp_path):
    run = RunDir(tmp_path)
    _keras_like(tmp_path / "last.keras")
    run.write_json("labels.json", ["a", "b"])
    run.write_state({"next_epoch": 1})
    files = json.loads((tmp_path / "state.json").read_text())["files"]
    assert sorted(files) == ["labels.json", "last.keras"]
    data = (tmp_path / "last.keras").read_bytes()
    assert files["last.keras"]["size"] == len(data)
    assert files["last.keras"]["sha256"] == hashlib.sha256(data).hexdigest()
    # Rewriting labels.json refreshes its record at once (a resume rewrites it before any epoch).
    run.write_json("labels.json", ["a", "b", "c"])
    again = json.loads((tmp_path / "state.json").read_text())["files"]
    assert again["last.keras"] == files["last.keras"]
    assert again["labels.json"]["sha256"] == hashlib.sha256((tmp_path / "labels.json").read_bytes()).hexdigest()


def test_bad_json_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "state.json").write_text('{"stage": 2,')
    with pytest.raises(run_files.DamagedFileError) as err:
        RunDir(tmp_path).read_state()
    assert str(err.value).startswith(f"{tmp_path / 'state.json'} is damaged (not valid JSON: ")
    assert "restore it from a copy" in str(err.value)


def test_a_truncated_checkpoint_is_named_with_its_recorded_size(tmp_path):
    _keras_like(tmp_path / "best.keras")
    RunDir(tmp_path).write_state({})
    size = (tmp_path / "best.keras").stat().st_size
    run_files.check_checkpoint(tmp_path / "best.keras")  # intact: matches its record
    (tmp_path / "best.keras").write_bytes((tmp_path / "best.keras").read_bytes()[:100])
    with pytest.raises(run_files.DamagedFileError, match=f"100 bytes, the run recorded {size}: not a .keras archive"):
        run_files.check_checkpoint(tmp_path / "best.keras")
    # A complete newer archive (a kill between the checkpoint and the state) is accepted.
    _keras_like(tmp_path / "best.keras")
    with zipfile.ZipFile(tmp_path / "best.keras", "a") as z:
        z.writestr("metadata.json", "{}")
    run_files.check_checkpoint(tmp_path / "best.keras")


def test_history_that_lost_epochs_is_refused(tmp_path):
    with pytest.raises(run_files.DamagedFileError, match="history.csv is missing, but the run finished 2 epoch"):
        run_files.check_history(tmp_path, {"next_epoch": 2})
    (tmp_path / "history.csv").write_text("epoch,stage,seconds\n1,1,0.5\n")
    with pytest.raises(run_files.DamagedFileError, match=r"lost the rows of epoch\(s\) 0 of the 2"):
        run_files.check_history(tmp_path, {"next_epoch": 2})
    run_files.check_history(tmp_path, {"next_epoch": 0})
