"""Streaming extraction: a file only the decoder refuses is skipped and listed like a preflight's bad file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from tlkit.data import preflight
from tlkit.features.extract import extract
from tlkit.features.store import load_features


def test_a_file_the_decoder_refuses_is_listed_and_the_rest_extracted(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    bad = tmp_path / "d" / "a" / "2x.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + rng.bytes(300))  # undecodable
    real = preflight.inspect_header

    def blind(path: str) -> dict:  # a preflight that cannot see this damage (as with damage in a later scan)
        if path == str(bad):
            return {"ok": True, "h": 32, "w": 32, "mode": "RGB", "format": "JPEG", "sha256": "x", "decoded": False}
        return real(path)

    monkeypatch.setattr(preflight, "inspect_header", blind)
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))
    out = tmp_path / "f.parquet"
    res = extract(
        "cifar_example",
        ["penultimate"],
        str(tmp_path / "d"),
        out,
        weights=None,
        chunk_rows=3,
        batch_size=2,
        progress=False,
    )
    assert res.rows == 10 and res.skipped_files == 1 and out.exists()
    feats, rows, _ = load_features(out)
    assert str(bad) not in set(rows["path"]) and len(rows) == 10 and feats["penultimate"].shape[0] == 10
    with open(out.with_name(out.name + ".skipped.csv")) as f:
        listed = list(csv.DictReader(f))
    assert [(r["path"], r["reason"]) for r in listed] == [(str(bad), "undecodable")]
