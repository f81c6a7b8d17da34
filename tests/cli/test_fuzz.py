"""Seeded fuzzing of every entry point for image bytes: truncations and byte flips of real files.

240 damaged JPEG/PNG/GIF/BMP files (small scikit-image photos, cut short and/or with bytes
changed, in the header and anywhere) go through three doors, each one process:

* ``tlkit check-data`` over a folder of all of them: exit 0, every file counted usable or
  listed bad with a reason;
* ``tlkit predict`` with all of them (and good images between): exit 0 or 2, one error line
  per refused file, every file answered or refused, the good ones answered;
* the exported ``serving_default`` signature, from a plain-TensorFlow client: each case
  answered or refused with a ``tlkit serving: image_bytes[0] ...`` line, and the next good
  request served with the same scores as before.

Nothing may crash: no traceback, no other exception type, no dead process.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, tlkit
from PIL import Image
from skimage import data
from test_limits import tiny_export

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

SEED = 1234
CASES = 240
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp"}
REASONS = {"missing", "empty", "not_an_image", "unsupported_format", "truncated", "corrupt", "too_large", "not_a_file"}


def _originals() -> list[tuple[str, bytes]]:
    """(extension, bytes): three photos at small sizes in every format (JPEG also progressive)."""
    photos = [data.chelsea()[::6, ::6], data.astronaut()[::8, ::8], data.coffee()[::9, ::7]]
    out = []
    for rgb in photos:
        im = Image.fromarray(np.ascontiguousarray(rgb))
        for fmt, ext in FORMATS.items():
            buf = io.BytesIO()
            im.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
            out.append((ext, buf.getvalue()))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", progressive=True)
        out.append((".jpg", buf.getvalue()))
    return out


def _fuzz(originals: list[tuple[str, bytes]], n: int, seed: int) -> list[tuple[str, bytes, str]]:
    """``n`` seeded cases (extension, bytes, what was done): truncation, flips or both; half of
    the flips land in the first 64 bytes, where headers are."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        ext, blob = rng.choice(originals)
        b = bytearray(blob)
        kind = rng.choice(["truncate", "flip", "flips", "truncate+flips"])
        if kind.startswith("truncate"):
            b = b[: rng.randrange(0, len(b))]
        if "flip" in kind and b:
            for _ in range(1 if kind == "flip" else rng.randint(2, 16)):
                pos = rng.randrange(min(len(b), 64)) if rng.random() < 0.5 else rng.randrange(len(b))
                b[pos] = rng.randrange(256)
        cases.append((ext, bytes(b), kind))
    return cases


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    originals = _originals()
    cases = _fuzz(originals, CASES, SEED)
    folder = root / "images"
    files, good = [], []
    for i, (ext, blob, _) in enumerate(cases):
        f = folder / ("a" if i % 2 else "b") / f"case{i:03d}{ext}"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(blob)
        files.append(f)
    for i, (ext, blob) in enumerate(originals):
        f = folder / ("a" if i % 2 else "b") / f"good{i:02d}{ext}"
        f.write_bytes(blob)
        good.append(f)
    return {"root": root, "folder": folder, "files": files, "good": good, "cases": cases, "originals": originals}


def _no_crash(res: subprocess.CompletedProcess, allowed: tuple[int, ...]) -> None:
    assert res.returncode in allowed, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "this is a bug" not in res.stderr, res.stderr[-3000:]


def test_fuzzed_files_through_check_data(fuzzed):
    res = tlkit("check-data", fuzzed["folder"], "--json", cwd=fuzzed["root"], timeout=300)
    _no_crash(res, (0,))
    report = json.loads(res.stdout)
    bad = {Path(b["path"]).name: b for b in report["bad_files"]}
    n = len(fuzzed["files"]) + len(fuzzed["good"])
    assert report["n_files"] == n and report["n_usable"] + report["n_skipped"] == n
    assert len(bad) == report["n_skipped"] and set(bad) <= {f.name for f in fuzzed["files"]}  # originals are fine
    for b in bad.values():
        assert b["reason"] in REASONS, b
    assert 0 < len(bad) < len(fuzzed["files"])  # the fuzz both breaks files and leaves some readable


def test_fuzzed_files_through_predict(fuzzed):
    # Good images between the damaged ones: each must still be answered.
    argv = []
    for i, f in enumerate(fuzzed["files"]):
        argv.append(f)
        if i % 40 == 39:
            argv.append(fuzzed["good"][(i // 40) % len(fuzzed["good"])])
    res = tlkit("predict", "--json", "--top", "1", *argv, cwd=fuzzed["root"], timeout=600)
    _no_crash(res, (0, 2))
    out = json.loads(res.stdout)
    answered = [r["image"] for r in out["results"]]
    refused = [e["image"] for e in out["errors"]]
    assert sorted(answered + refused) == sorted(map(str, argv))  # each exactly once
    assert {str(g) for g in argv if Path(g).name.startswith("good")} <= set(answered)
    assert all(e["reason"] in REASONS for e in out["errors"]), out["errors"][:5]
    assert (res.returncode == 2) == bool(refused)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == len(refused) and all(ln.startswith("tlkit predict: error: ") for ln in lines)
    assert all(len(r["predictions"]) == 1 for r in out["results"])


_CLIENT = textwrap.dedent(r"""
    import json, sys
    sys.modules["tlkit"] = None  # a client has TensorFlow only
    import numpy as np
    import tensorflow as tf
    path, listing, good_file = sys.argv[1:4]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    good = open(good_file, "rb").read()
    base = serve(image_bytes=tf.constant([good]))["scores"].numpy()
    results = []
    for f in json.load(open(listing)):
        blob = open(f, "rb").read()
        try:
            out = serve(image_bytes=tf.constant([blob]))
            r = {"answered": list(out["scores"].shape), "finite": bool(np.isfinite(out["scores"].numpy()).all())}
        except tf.errors.InvalidArgumentError as e:
            r = {"refused": e.message}
        except Exception as e:  # anything else is a crash of the serving graph
            r = {"crashed": f"{type(e).__name__}: {e}"}
        after = serve(image_bytes=tf.constant([good]))["scores"].numpy()
        r["next_served_same"] = bool(np.array_equal(after, base))
        results.append(r)
    print(json.dumps(results))
""")


def test_fuzzed_bytes_through_the_serving_signature(fuzzed, tmp_path_factory):
    export_dir = tiny_export(tmp_path_factory)["path"]
    listing = fuzzed["root"] / "listing.json"
    listing.write_text(json.dumps([str(f) for f in fuzzed["files"]]))
    good = next(f for f in fuzzed["good"] if f.suffix == ".jpg")
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENT, export_dir, str(listing), str(good)],
        env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == CASES
    crashed = [r for r in results if "crashed" in r]
    assert not crashed, crashed[:3]
    for r, (ext, blob, kind) in zip(results, fuzzed["cases"]):
        if "answered" in r:
            assert r["answered"] == [1, 3] and r["finite"], (kind, r)
        else:  # refused, with tlkit's line naming the image, not the decoder's text
            assert "tlkit serving: image_bytes[0] " in r["refused"], (ext, kind, len(blob), r["refused"][:500])
        assert r["next_served_same"], (kind, r)
    refused = sum("refused" in r for r in results)
    assert 0 < refused < CASES, refused
