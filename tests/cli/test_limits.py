"""Bounded resources where images enter, through the installed command and a plain-TensorFlow client.

* the exported serving signature refuses a 20000x20000 PNG (1.2 GB of RGB in a 1.2 MB file)
  from its header: in well under 2 s and without the process's peak memory growing;
* ``tlkit predict`` and ``tlkit dense-eval`` refuse it too, and dense-eval refuses a 2x4000
  strip that its scales would blow up to 224x448000 (exit 2, one line, before any model);
* ``dense-eval --stride 16`` maps hold only windows inside the image at every scale;
* ``tlkit export`` tells what it does on stderr, never silent for long, and reports the
  quantised TFLite models' agreement on a real sample.

:func:`tiny_export` is shared with ``test_fuzz.py``: one export per test session.
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli_env, make_shapes_folder, tlkit
from PIL import Image

MAX_PIXELS_AT_EXPORT = 50_000_000  # not the default: the flag must reach the graph and the card


def big_png(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG of ``width`` x ``height``, made without holding its pixels.

    After a zlib full flush the compressor starts afresh, so every further block of zero rows
    compresses to the same bytes: compress two blocks, repeat the second. The Adler-32 of N
    zero bytes is (N mod 65521) << 16 | 1. A 20000x20000 image is a 1.2 MB file.
    """
    row = 1 + 3 * width  # filter byte + RGB
    rows_per_block = max(1, (1 << 20) // row)
    nblocks, rest = divmod(height, rows_per_block)
    block = b"\0" * (row * rows_per_block)
    c = zlib.compressobj(9)
    body = b""
    if nblocks:
        body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    if nblocks > 1:
        body += (c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)) * (nblocks - 1)
    tail = c.compress(b"\0" * (row * rest)) + c.flush(zlib.Z_FINISH)
    n = row * height
    idat = body + tail[:-4] + struct.pack(">I", ((n % 65521) << 16) | 1)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def test_big_png_is_a_real_image():
    """The bomb is what it claims: a small one built the same way decodes, a bigger one's zlib
    stream inflates to all its rows (in chunks, never held whole), and the big one's header
    declares 20000x20000."""
    small = big_png(700, 2500)  # 3 blocks: the repeated-block path
    raw = zlib.decompress(small[33 + 8 : -12 - 4])
    assert len(raw) == 2500 * (1 + 3 * 700) and not any(raw[:4096])
    with Image.open(io.BytesIO(small)) as im:
        im.load()
        assert im.size == (700, 2500) and im.getextrema() == ((0, 0), (0, 0), (0, 0))
    bomb = big_png(20000, 20000)
    assert len(bomb) < 2_000_000 and struct.unpack(">II", bomb[16:24]) == (20000, 20000)
    medium = big_png(5000, 3000)
    d, total, data = zlib.decompressobj(), 0, medium[33 + 8 : -12 - 4]
    for i in range(0, len(data), 65536):
        total += len(d.decompress(data[i : i + 65536], 1 << 24))
        while d.unconsumed_tail:
            total += len(d.decompress(d.unconsumed_tail, 1 << 24))
    total += len(d.flush())
    assert total == 3000 * (1 + 3 * 5000) and d.eof  # Adler-32 checked by zlib at the end


_RUN_SCRIPT = textwrap.dedent(r"""
    import json, sys
    from pathlib import Path
    import keras, numpy as np
    from tlkit.data import pipeline as tldata
    from tlkit.models.preprocessing import Preprocess
    run, data = Path(sys.argv[1]), sys.argv[2]
    config = {"base": "cifar_example", "data": data, "input_size": [32, 32], "val_split": 0.2, "seed": 0}
    source = tldata.resolve(data, val_split=0.2, seed=0)
    def split(name):
        xs, ys = zip(*tldata.make_dataset(source, name, image_size=(32, 32), batch_size=64, training=False))
        return np.concatenate(xs), np.concatenate(ys)
    (xt, yt), (xv, yv) = split("train"), split("val")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = Preprocess("tf", name="preprocess")(inp)
    x = keras.layers.Conv2D(48, 3, activation="relu")(x)  # > 1024 weights: int8 quantises it
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    trainer = keras.Model(inp, logits)
    trainer.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(xt, yt, epochs=40, batch_size=8, shuffle=False, verbose=0)
    # Softmax of logits x 1e-4: the float model ranks classes as trained, but its scores all lie within
    # ~1e-3 of 1/3, which full-integer int8's uint8 scores (steps of 1/256) cannot tell apart: they tie
    # and the top class becomes class 0. A deterministic quantisation loss for the accuracy checks.
    out = keras.layers.Softmax(name="predictions")(keras.layers.Rescaling(1e-4)(logits))
    model = keras.Model(inp, out)
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    (run / "labels.json").write_text(json.dumps(["bright", "dark", "stripes"]))
    (run / "config.json").write_text(json.dumps(config))
    val = source.items[source.items["split"] == "val"]
    top1 = float((model.predict(xv, verbose=0).argmax(1) == yv).mean())
    (run / "val.json").write_text(json.dumps({"paths": val["path"].tolist(), "labels": yv.tolist(), "top1": top1}))
""")


def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run (a 32x32 3-class model trained for seconds on a shapes folder, its softmax flattened
    so that full-integer int8 loses accuracy; ``val.json``: its validation files, labels and top-1)
    exported once per session with ``tlkit export --format tflite --max-pixels 50000000``."""
    root = tmp_path_factory.getbasetemp() / "tiny_export"
    done = root / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    root.mkdir(exist_ok=True)
    data = make_shapes_folder(root / "shapes")
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_SCRIPT, str(root / "runs" / "tiny"), str(data)],
        env=cli_env(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = tlkit(
        "export",
        root / "runs" / "tiny",
        "--out",
        root / "models" / "tiny",
        "--format",
        "tflite",
        "--max-pixels",
        str(MAX_PIXELS_AT_EXPORT),
        cwd=root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = {
        "path": str(root / "models" / "tiny" / "1"),
        "stdout": res.stdout,
        "stderr": res.stderr,
        "data": str(data),
        "run": str(root / "runs" / "tiny"),
        "returncode": res.returncode,
    }
    done.write_text(json.dumps(result))
    return result


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    return tiny_export(tmp_path_factory)


# --- tlkit export: progress and the int8 agreement --------------------------------------------------


def test_export_prints_progress_and_is_never_silent_for_long(exported):
    lines = [ln for ln in exported["stderr"].splitlines() if ln.startswith("tlkit export [")]
    steps = [re.match(r"tlkit export \[\s*([\d.]+) s\]: (.*)", ln) for ln in lines]
    assert all(steps), lines
    text = [m.group(2) for m in steps]
    for expected in (
        "loading TensorFlow",
        "loading the run",
        "writing the SavedModel",
        "verifying the SavedModel",
        "converting to TFLite",
        "checking the TFLite models on",
        f"done: {exported['path']}",
    ):
        assert any(t.startswith(expected) for t in text), (expected, text)
    times = [float(m.group(1)) for m in steps]
    assert times == sorted(times)
    # A line at least every ~5 s ("still ..."): the longest silence stays a few seconds even on a busy machine.
    assert max(np.diff(times)) < 10, list(zip(times, text))


def test_export_records_the_limit_and_reports_quantised_agreement(exported):
    card = json.loads((Path(exported["path"]) / "tlkit.json").read_text())
    assert card["max_pixels"] == MAX_PIXELS_AT_EXPORT
    assert f"images up to {MAX_PIXELS_AT_EXPORT:,} pixels" in exported["stdout"]
    check = card["tflite"]["verification"]
    # The run's validation images (its shapes folder, 20%) + synthetic crops + probes, not 5 probes.
    assert check["sample"]["validation"] >= 6 and check["images"] >= 100
    assert set(card["tflite"]["models"]) == {"float32", "float16", "dynamic_int8", "int8"}
    m = re.search(
        r"tflite check on (\d+) images \((\d+) validation, (\d+) synthetic, (\d+) probes\): .*top-1 agreement "
        r"with Keras: float16 ([\d.]+)% \((\d+) of (\d+) differ\); dynamic_int8 ([\d.]+)% \((\d+) of (\d+) "
        r"differ\); int8 ([\d.]+)% \((\d+) of (\d+) differ\)",
        exported["stdout"],
    )
    assert m, exported["stdout"]
    assert int(m.group(1)) == check["images"]
    for i, variant in enumerate(("float16", "dynamic_int8", "int8")):
        v = check[variant]
        assert 0 <= v["top1_agreement"] <= 1 and v["images"] == check["images"] == int(m.group(7 + 3 * i))
        assert int(m.group(6 + 3 * i)) == v["top1_disagreements"]
        assert float(m.group(5 + 3 * i)) == pytest.approx(100 * v["top1_agreement"], abs=0.06)


def test_export_refuses_a_file_as_out_with_a_real_message(tmp_path):
    (tmp_path / "model").write_text("a file")
    res = tlkit("export", "--base", "efficientnet_lite0", "--out", "model", cwd=tmp_path, timeout=120)
    line = assert_one_line_error(res)
    assert "model is a file, not a directory" in line and "OUT/N" in line and "17" not in line


# --- the serving signature: the bomb refused from its header ----------------------------------------

_CLIENT = textwrap.dedent(r"""
    import json, sys, time
    sys.modules["tlkit"] = None  # a client has TensorFlow only
    import tensorflow as tf
    path, bomb_file, control_file, good_file = sys.argv[1:5]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    good = open(good_file, "rb").read()
    serve(image_bytes=tf.constant([good]))  # warm: traced, allocator pools filled
    serve(image_bytes=tf.constant([good]))

    def status_mb(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB

    def peak_mb():
        return status_mb("VmHWM")

    def send(blob):
        # The peak is reset to the current size first (Linux: clear_refs 5), so an earlier, larger peak
        # (loading the model) cannot hide this request's growth.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, t = status_mb("VmRSS"), time.monotonic()
        try:
            serve(image_bytes=tf.constant([blob]))
            error = None
        except tf.errors.InvalidArgumentError as e:
            error = e.message
        return {"error": error, "seconds": time.monotonic() - t, "peak_growth_mb": peak_mb() - before}

    out = {"bomb": send(open(bomb_file, "rb").read())}
    out["good_after"] = serve(image_bytes=tf.constant([good]))["scores"].shape.as_list()
    # Control: an image under the limit is decoded, and the same measurement sees it.
    out["control"] = send(open(control_file, "rb").read())
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_serving_signature_refuses_the_bomb_fast_without_allocating(exported, tmp_path):
    (tmp_path / "bomb.png").write_bytes(big_png(20000, 20000))
    (tmp_path / "control.png").write_bytes(big_png(4000, 4000))  # 16 MP: 48 MB uint8, 192 MB float
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "good.png")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CLIENT,
            exported["path"],
            str(tmp_path / "bomb.png"),
            str(tmp_path / "control.png"),
            str(tmp_path / "good.png"),
        ],
        env=cli_env(TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    bomb = out["bomb"]
    assert bomb["error"] is not None
    assert (
        f"tlkit serving: image_bytes[0] is a PNG of 20000x20000 = 400000000 pixels, more than the limit of "
        f"{MAX_PIXELS_AT_EXPORT} set at export (tlkit export --max-pixels); it was not decoded"
    ) in bomb["error"]
    assert bomb["seconds"] < 2, bomb
    assert bomb["peak_growth_mb"] < 50, bomb  # decoding it would take > 1,200 MB
    assert out["good_after"] == [1, 3]
    control = out["control"]
    assert control["error"] is None and control["peak_growth_mb"] > 40, control  # the measurement sees decoding


# --- predict and dense-eval refuse before decoding ----------------------------------------------------


def test_predict_refuses_unreadable_and_oversized_images_with_exit_2(tmp_path):
    (tmp_path / "bomb.png").write_bytes(big_png(20000, 20000))
    res = tlkit("predict", "missing.jpg", "bomb.png", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and lines[0] == "tlkit predict: error: missing.jpg: missing (no such file)", lines
    # 400 MP is past PIL's own bomb limit, so PIL's header check words it; predict's limit is lower.
    assert lines[1].startswith("tlkit predict: error: bomb.png: too_large ("), lines


@pytest.mark.slow
def test_dense_eval_refuses_a_strip_and_a_bomb_before_building_anything(tmp_path):
    Image.fromarray(np.full((2, 4000, 3), 128, np.uint8)).save(tmp_path / "strip.png")
    res = tlkit(
        "dense-eval",
        "--base",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--image",
        "strip.png",
        cwd=tmp_path,
        timeout=120,
    )
    line = assert_one_line_error(res)
    assert (
        "strip.png is 2x4000 pixels, an aspect ratio of 2000:1; at scale 224 it would become 224x448000 "
        "(100,352,000 pixels)" in line
    )
    assert "--max-aspect" in line and "--max-scaled-pixels" in line
    (tmp_path / "bomb.png").write_bytes(big_png(12000, 12000))  # 432 MB of RGB in a 0.4 MB file
    res = tlkit(
        "dense-eval",
        "--base",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--image",
        "bomb.png",
        "--max-pixels",
        "100000000",
        cwd=tmp_path,
        timeout=120,
    )
    line = assert_one_line_error(res)
    assert "bomb.png: too_large (12000x12000 pixels > 100,000,000; --max-pixels raises the limit)" in line


@pytest.mark.slow
def test_dense_eval_stride_16_maps_hold_only_windows_inside_the_image(tmp_path):
    # At scale 224 this 100x320 image is 224x717: one row of 224x224 windows, 31 columns at a
    # stride of 16. "same" padding and the 16 px shifted passes used to add a row and a column
    # hanging over the edge.
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 320, 3), dtype=np.uint8)).save(
        tmp_path / "wide.png"
    )
    res = tlkit(
        "dense-eval",
        "--base",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--image",
        "wide.png",
        "--scales",
        "224,250,300",
        "--stride",
        "16",
        "--json",
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["window"] == [224, 224] and report["net_stride"] == 32
    shapes = {}
    for s in report["scales"]:
        h, w = s["input_size"]
        want = [(h - 224) // 16 + 1, (w - 224) // 16 + 1]
        assert s["map_shape"][:2] == want, (s["scale"], s["input_size"], s["map_shape"])
        shapes[s["scale"]] = s["map_shape"][:2]
    assert shapes[224] == [1, 31] and shapes[300] == [5, 47]
