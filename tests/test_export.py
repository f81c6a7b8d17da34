"""``tlkit export``: SavedModel for TF Serving with decoding, labels and a model card inside.

EfficientNet-Lite0 (real ImageNet weights) is exported once per module; the refusal,
interruption and run-directory tests use a tiny model so they stay fast.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from tlkit.cli import main as cli
from tlkit.data.images import MAX_PIXELS
from tlkit.errors import ConfigError
from tlkit.export import savedmodel as export
from tlkit.export import serving_decode
from tlkit.export.tflite_metadata import embedded_labels
from tlkit.imagenet import class_names
from tlkit.models.preprocessing import Preprocess

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
SAVED_MODEL_CLI = str(Path(sys.executable).with_name("saved_model_cli"))


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chelsea_jpeg() -> bytes:
    return _jpeg(data.chelsea())


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """EfficientNet-Lite0 exported (and verified) into a fresh saved_models root."""
    root = tmp_path_factory.mktemp("saved_models")
    result = export.export_base("efficientnet_lite0", root / "efficientnet_lite0")
    return result


def _tiny_model(classes: int = 3, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3), name="image")
    x = Preprocess("tf", name="preprocess")(inp)
    x = keras.layers.Conv2D(48, 3, activation="relu")(x)  # > 1024 weights: int8 quantises it
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


# --- layout, card, asset -------------------------------------------------------------------------


@pytest.mark.slow
def test_layout_card_and_labels_asset(lite):
    root = lite.path.parent
    assert lite.version == 1 and lite.path == root / "1"
    assert sorted(p.name for p in root.iterdir()) == ["1"]  # no temporary directory left
    assert (lite.path / "saved_model.pb").is_file() and (lite.path / "variables").is_dir()
    labels = (lite.path / "assets" / "labels.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert labels == class_names()
    card = json.loads((lite.path / "tlkit.json").read_text())
    assert card["base"] == "efficientnet_lite0"
    assert card["classes"] == class_names() and card["num_classes"] == 1000
    assert card["input_size"] == [224, 224]
    assert card["preprocessing"]["mode"] == "lite" and card["preprocessing"]["resize"] == "crop"
    assert card["top_k"] == 5 and card["version"] == 1
    assert card["tensorflow_version"] == tf.__version__ and card["tlkit_version"]
    assert "metrics" in card and card["created"].endswith("+00:00")
    assert card["verification"]["passed"] is True
    assert card["verification"]["max_abs_diff_vs_keras"] <= 1e-4
    assert card["max_pixels"] == MAX_PIXELS  # the serving graph's limit, as `tlkit predict`'s
    refused = card["verification"]["refused"]  # the verifier sent each and read tlkit's line back
    assert sorted(refused) == ["empty", "garbage", "too_large", "truncated"]
    assert all(line.startswith("tlkit serving: ") for line in refused.values()), refused
    assert card["signatures"]["predict_pixels"]["inputs"] == {"pixels": ["float32", [-1, 224, 224, 3]]}


# --- saved_model_cli, the tool shipped with TensorFlow ---------------------------------------------


def _parse_show(text: str) -> dict:
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from `saved_model_cli show --all`."""
    sigs: dict = {}
    for block in re.split(r"\n(?=signature_def\[')", text):
        m = re.match(r"signature_def\['(\w+)'\]", block)
        if not m:
            continue
        entries = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))", block)
        sig = sigs.setdefault(m.group(1), {"inputs": {}, "outputs": {}})
        for kind, name, dtype, shape in entries:
            sig[kind][name] = (dtype, shape)
    return sigs


@pytest.mark.slow
def test_saved_model_cli_show_lists_both_signatures(lite):
    out = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--dir", str(lite.path), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    sigs = _parse_show(out)
    tops = {
        "top_k_ids": ("DT_INT32", "(-1, 5)"),
        "top_k_labels": ("DT_STRING", "(-1, 5)"),
        "top_k_scores": ("DT_FLOAT", "(-1, 5)"),
        "scores": ("DT_FLOAT", "(-1, 1000)"),
    }
    assert sigs["serving_default"] == {"inputs": {"image_bytes": ("DT_STRING", "(-1)")}, "outputs": tops}
    assert sigs["predict_pixels"] == {"inputs": {"pixels": ("DT_FLOAT", "(-1, 224, 224, 3)")}, "outputs": tops}


def _cli_run_top_ids(path: Path, signature: str, inputs: str) -> np.ndarray:
    proc = subprocess.run(
        [
            SAVED_MODEL_CLI,
            "run",
            "--dir",
            str(path),
            "--tag_set",
            "serve",
            "--signature_def",
            signature,
            "--inputs",
            inputs,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"Result for output key top_k_ids:\s*\n(\[\[[^\]]*\]\])", proc.stdout)
    assert m, proc.stdout[-2000:]
    return np.array([[int(v) for v in re.findall(r"-?\d+", row)] for row in m.group(1).split("]")[:-2]])


@pytest.mark.slow
def test_saved_model_cli_run_on_a_photo_agrees_with_keras(lite, chelsea_jpeg, tmp_path):
    pixels = export.decode_images(tf.constant([chelsea_jpeg]), (224, 224)).numpy()
    keras_top = int(np.argmax(lite.model(pixels, training=False)[0]))
    assert keras_top in CATS
    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "bytes.npy", np.array([chelsea_jpeg], dtype=object), allow_pickle=True)
    ids = _cli_run_top_ids(lite.path, "predict_pixels", f"pixels={tmp_path / 'pixels.npy'}")
    assert ids.shape == (1, 5) and ids[0, 0] == keras_top
    ids = _cli_run_top_ids(lite.path, "serving_default", f"image_bytes={tmp_path / 'bytes.npy'}")
    assert ids[0, 0] == keras_top


# --- a fresh process without tlkit ---------------------------------------------------------------

_CHILD = textwrap.dedent(r"""
    import json, sys
    sys.modules["tlkit"] = None  # tlkit cannot be imported here
    import numpy as np, tensorflow as tf
    path, jpeg_file, out = sys.argv[1:4]
    jpeg = open(jpeg_file, "rb").read()
    m = tf.saved_model.load(path)
    serve = m.signatures["serving_default"]
    first = serve(image_bytes=tf.constant([jpeg]))
    errors = []
    for bad in [b"GARBAGE, not an image", jpeg[: len(jpeg) // 3]]:
        try:
            serve(image_bytes=tf.constant([jpeg, bad]))
            errors.append(None)
        except tf.errors.InvalidArgumentError as e:
            errors.append(e.message)
    again = serve(image_bytes=tf.constant([jpeg]))
    np.savez(out, scores=first["scores"].numpy(), again=again["scores"].numpy())
    print(json.dumps({
        "tlkit_loaded": any(k == "tlkit" or k.startswith("tlkit.") for k, v in sys.modules.items() if v),
        "top_k_ids": first["top_k_ids"].numpy().tolist(),
        "top_k_labels": [b.decode() for b in first["top_k_labels"].numpy()[0]],
        "errors": errors}))
""")


@pytest.fixture(scope="module")
def fresh(lite, chelsea_jpeg, tmp_path_factory):
    d = tmp_path_factory.mktemp("fresh")
    (d / "chelsea.jpg").write_bytes(chelsea_jpeg)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(lite.path), str(d / "chelsea.jpg"), str(d / "out.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(d),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(d / "out.npz") as z:
        meta["scores"], meta["again"] = z["scores"], z["again"]
    return meta


@pytest.mark.slow
def test_fresh_process_without_tlkit_puts_a_cat_first(lite, fresh, chelsea_jpeg):
    assert fresh["tlkit_loaded"] is False
    assert fresh["top_k_ids"][0][0] in CATS, fresh["top_k_labels"]
    assert fresh["top_k_labels"][0] == class_names()[fresh["top_k_ids"][0][0]]
    # The Keras model on the same decoded pixels (the graph's own decode function).
    pixels = export.decode_images(tf.constant([chelsea_jpeg]), (224, 224)).numpy()
    keras_scores = np.asarray(lite.model(pixels, training=False))
    assert np.max(np.abs(fresh["scores"] - keras_scores)) <= 1e-4


def test_corrupt_request_fails_clearly_and_the_model_keeps_serving(fresh):
    garbage, truncated = fresh["errors"]
    assert garbage is not None and "image_bytes[1] is not a JPEG, PNG, WebP, BMP or GIF image" in garbage
    # Was the decoder's own "Invalid JPEG data ..."; now tlkit's line naming the image.
    assert (
        truncated is not None
        and "tlkit serving: image_bytes[1] could not be decoded: damaged or truncated JPEG data" in truncated
    )
    np.testing.assert_array_equal(fresh["again"], fresh["scores"])


# --- in-graph decoding matches tlkit's own image paths --------------------------------------------


def test_plain_resize_gives_the_pixels_the_data_pipeline_gives(chelsea_jpeg, tmp_path):
    from tlkit.data import pipeline as tldata
    from tlkit.data import resize
    from tlkit.data.images import load_rgb

    (tmp_path / "c.jpg").write_bytes(chelsea_jpeg)
    want = resize.resize(tf.constant(load_rgb(tmp_path / "c.jpg")), (64, 80)).numpy()  # PIL decode
    got = export.decode_images(tf.constant([chelsea_jpeg]), (64, 80), "plain").numpy()[0]
    np.testing.assert_array_equal(got, want)
    batch = next(iter(tldata.images_dataset([str(tmp_path / "c.jpg")], image_size=(64, 80), batch_size=1)))
    np.testing.assert_array_equal(batch.numpy()[0], want)  # what finetune/evaluate/extract feed a model


@pytest.mark.parametrize("mode", ["crop", "plain"])
def test_crop_and_plain_resize_are_tlkit_predicts_pixels(chelsea_jpeg, mode):
    from tlkit.cli.commands.predict import prepare_image

    want = prepare_image(np.asarray(Image.open(io.BytesIO(chelsea_jpeg)).convert("RGB")), (224, 224), mode)
    got = export.decode_images(tf.constant([chelsea_jpeg]), (224, 224), mode).numpy()[0]
    # One resize module, one decoder behaviour (libjpeg's accurate IDCT, as PIL): the same floats.
    np.testing.assert_array_equal(got, want)
    if mode == "crop":  # the centre square of 87.5% of the shorter side (300 -> 262), not the whole image
        plain = export.decode_images(tf.constant([chelsea_jpeg]), (224, 224), "plain").numpy()[0]
        assert np.abs(got - plain).mean() > 5


def test_an_unknown_resize_policy_is_refused_naming_the_flag(chelsea_jpeg):
    with pytest.raises(ConfigError, match=r"'dataset' is not one of crop, plain \(--resize\)"):
        export.decode_images(tf.constant([chelsea_jpeg]), (32, 32), "dataset")


# --- versions, refusal, interruption --------------------------------------------------------------


def test_exporting_to_an_existing_version_is_refused(lite, capsys):
    before = (lite.path / "saved_model.pb").stat().st_mtime_ns
    code = cli.main(["export", "--base", "efficientnet_lite0", "--out", str(lite.path.parent), "--version", "1"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (lite.path / "saved_model.pb").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError):
        export.export_model(_tiny_model(1000), class_names(), lite.path.parent, version=1, verify=False)


def test_next_version_ignores_temporary_and_foreign_entries(tmp_path):
    assert export.next_version(tmp_path / "missing") == 1
    for name in ("1", "3", "latest", ".tmp-7-host-1-abc", "10x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert export.existing_versions(tmp_path) == [1, 3]
    assert export.next_version(tmp_path) == 4


def test_labels_are_checked(tmp_path):
    with pytest.raises(export.ExportError, match="line breaks"):
        export.export_model(_tiny_model(), ["a", "b\nc", "d"], tmp_path, verify=False)
    with pytest.raises(export.ExportError, match="3 class names|outputs"):
        export.export_model(_tiny_model(4), ["a", "b", "c"], tmp_path, verify=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [export.VerificationError("probe mismatch"), KeyboardInterrupt()])
def test_failed_or_interrupted_export_leaves_nothing(tmp_path, monkeypatch, exc):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(export, "verify_export", boom)
    with pytest.raises(type(exc)):
        export.export_model(_tiny_model(), ["a", "b", "c"], tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert export.next_version(tmp_path) == 1


_KILLED = textwrap.dedent(r"""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_export import _tiny_model
    from tlkit.export import savedmodel as export
    export.verify_export = lambda *a, **k: time.sleep(600)  # hang where the export is half done
    export.export_model(_tiny_model(), ["a", "b", "c"], sys.argv[1])
""")


@pytest.mark.slow
def test_export_killed_midway_leaves_no_version(tmp_path):
    out = tmp_path / "tiny"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(out), str(Path(__file__).parent)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 240
        while not list(out.glob(".tmp-1-*/tlkit.json")):  # SavedModel and card written, verifying
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "export never reached verification"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "1").exists()
    stale = list(out.glob(".tmp-1-*"))
    assert len(stale) == 1 and export.next_version(out) == 1
    # The next export takes version 1 and removes what the killed one left behind.
    result = export.export_model(_tiny_model(), ["a", "b", "c"], out, verify=False)
    assert result.path == out / "1"
    assert sorted(p.name for p in out.iterdir()) == ["1"]


# --- a run directory through the CLI, and --check -------------------------------------------------


@pytest.mark.slow
def test_run_dir_export_via_cli_and_check(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny-run"
    run.mkdir(parents=True)
    model = _tiny_model()
    model.save(run / "best.keras")
    (run / "labels.json").write_text(json.dumps(["ant", "bee", "cicada"]))
    (run / "config.json").write_text(json.dumps({"base": "allcnn_c", "data": "bugs/", "input_size": [32, 32]}))
    (run / "metrics.json").write_text(json.dumps({"top1": 0.75, "split": "val"}))
    out = tmp_path / "saved_models" / "bugs"
    assert cli.main(["export", str(run), "--out", str(out), "--top-k", "2", "--format", "tflite"]) == 0
    assert "verified" in capsys.readouterr().out
    card = export.read_card(out / "1")
    assert card["classes"] == ["ant", "bee", "cicada"] and card["metrics"] == {"top1": 0.75, "split": "val"}
    assert card["base"] == "allcnn_c" and card["preprocessing"]["mode"] == "unit"
    assert card["top_k"] == 2 and card["preprocessing"]["resize"] == "plain"  # a run's default
    assert card["source"]["kind"] == "run" and card["source"]["checkpoint"] == "best.keras"

    # TFLite: four models beside the SavedModel, the same labels, verified at export.
    tfl = card["tflite"]
    assert sorted(tfl["models"]) == ["dynamic_int8", "float16", "float32", "int8"]
    assert all((out / "1" / m["file"]).is_file() and m["what"] for m in tfl["models"].values())
    # The run's data is gone: full-integer int8 calibrated on the synthetic crops and the probes, no accuracy.
    assert tfl["int8_calibration"]["source"].startswith("synthetic photo crops") and tfl["accuracy"] is None
    assert tfl["int8_io"]["pixels"] == {"dtype": "uint8", "scale": pytest.approx(1.0, abs=1e-6), "zero_point": 0}
    assert tfl["int8_io"]["scores"]["dtype"] == "uint8"
    assert tfl["verification"]["passed"] and tfl["verification"]["float32"]["max_abs_diff_vs_keras"] <= 1e-4
    # Measured on a sample large enough to mean something (the run's data "bugs/" is gone here:
    # synthetic crops and the probes), int8 reported as an agreement rate, not a pass/fail on 5 probes.
    check = tfl["verification"]
    assert check["images"] == check["sample"]["images"] >= 100
    assert check["sample"]["synthetic"] >= 90 and "validation" not in check["sample"]
    i8 = check["int8"]
    assert i8["images"] == check["images"] and 0 <= i8["top1_disagreements"] <= check["images"]
    assert i8["top1_agreement"] == pytest.approx(1 - i8["top1_disagreements"] / check["images"])
    assert 0 < i8["max_abs_diff_vs_keras"] < 1 and i8["mean_abs_diff_vs_keras"] <= i8["max_abs_diff_vs_keras"]
    assert (out / "1" / "tflite" / "labels.txt").read_text() == "ant\nbee\ncicada\n"
    sizes = {v: m["bytes"] for v, m in tfl["models"].items()}
    assert sizes["dynamic_int8"] < sizes["float16"] < sizes["float32"]
    pixels = export.decode_images(tf.constant(export.probe_images()[:2]), (32, 32), "plain").numpy()
    runner = export._tflite_interpreter(out / "1" / "tflite" / "model_float32.tflite").get_signature_runner(
        "predict_pixels"
    )
    got = runner(pixels=pixels)
    np.testing.assert_allclose(got["scores"], model(pixels, training=False), atol=1e-4)
    assert sorted(got) == ["scores"]  # one image input, one scores output: what MediaPipe's ImageClassifier takes
    raw = (out / "1" / "tflite" / "model_int8.tflite").read_bytes()
    assert embedded_labels(raw) == ["ant", "bee", "cicada"] and tfl["metadata"]["embedded"]

    assert cli.main(["export", "--check", str(out), "--json"]) == 0  # model dir: checks the latest
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["path"] == str(out / "1")
    assert report["max_abs_diff_bytes_vs_pixels"] <= 1e-4

    # Verification can fail: a different model does not match the export.
    with pytest.raises(export.VerificationError, match="differ from the Keras model"):
        export.verify_export(out / "1", model=_tiny_model(seed=1))


# --- in-graph header checks (no export needed) ---------------------------------------------------


def _encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_headers_give_format_size_and_frames_before_decoding():
    rgb = np.ascontiguousarray(data.chelsea()[:37, :53])
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in (0, 90, 180)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    cases = {
        "jpeg": (_encode(rgb, "JPEG"), 1, 37, 53, 1),
        "progressive": (_encode(rgb, "JPEG", progressive=True), 1, 37, 53, 1),
        "png": (_encode(rgb, "PNG"), 2, 37, 53, 1),
        "gif": (_encode(rgb, "GIF"), 3, 37, 53, 1),
        "animated": (buf.getvalue(), 3, 20, 30, 3),  # TensorFlow decodes every frame: all count
        "bmp": (_encode(rgb, "BMP"), 4, 37, 53, 1),
    }
    for name, (blob, fmt, h, w, n) in cases.items():
        info = {k: v.numpy() for k, v in serving_decode.header_info(tf.constant(blob)).items()}
        assert (info["format"], info["height"], info["width"], info["frames"]) == (fmt, h, w, n), name
        assert info["problem"] == serving_decode.OK and info["pixels"] == h * w * n, name
    assert (
        serving_decode.header_info(tf.constant(cases["png"][0]), max_pixels=37 * 53 - 1)["problem"].numpy()
        == serving_decode.TOO_LARGE
    )
    for blob in (b"", b"GIF", b"\xff\xd8\xff\xe0\x00\x10JFIF", cases["png"][0][:20]):
        assert serving_decode.header_info(tf.constant(blob))["problem"].numpy() in (
            serving_decode.NOT_IMAGE,
            serving_decode.BAD_HEADER,
        ), blob


def test_decode_refuses_with_a_readable_line_and_without_allocating():
    bomb = export.png_header_only(20000, 20000)  # 1.2 GB of RGB if decoded
    ok = _encode(np.ascontiguousarray(data.chelsea()[:40, :40]), "PNG")
    decode = tf.function(
        lambda b: serving_decode.decode_images(b, (32, 32), "plain"), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    decode.get_concrete_function()  # traced once, as the SavedModel's signature is
    cases = {
        "image_bytes[1] is a PNG of 20000x20000 = 400000000 pixels, more than the limit of 64000000 set at export "
        "(tlkit export --max-pixels); it was not decoded": [ok, bomb],
        "the request holds no images": [],
        "image_bytes[0] could not be decoded: damaged or truncated PNG data": [ok[:200], ok],
        "image_bytes[2] is not a JPEG, PNG, WebP, BMP or GIF image (0 bytes)": [ok, ok, b""],
    }
    for expected, batch in cases.items():
        started = time.monotonic()
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            decode(tf.constant(batch, dtype=tf.string))
        assert time.monotonic() - started < 2
        line = serving_decode.error_line(info.value.message)
        assert line == "tlkit serving: " + expected or line.startswith("tlkit serving: " + expected), line
    assert decode(tf.constant([ok, ok])).shape == (2, 32, 32, 3)  # and it keeps serving


def _children_running(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z" and int(d.name) != os.getpid():
            pids.append(int(d.name))
    return pids


_EXPORTING = textwrap.dedent(r"""
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_export import _tiny_model
    from tlkit.export import savedmodel as export
    export.export_model(_tiny_model(), ["a", "b", "c"], sys.argv[1])
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_export_takes_its_verifier_along(tmp_path, sig):
    """The verifying child dies with the exporting process (PR_SET_PDEATHSIG, stdin EOF); SIGTERM
    also removes the temporary directory (SIGKILL leaves it to the next export)."""
    from tlkit._lock import FileLock

    out = tmp_path / "tiny"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXPORTING, str(out), str(Path(__file__).parent)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 240
        while not (children := _children_running(str(out / ".tmp-1-"))):  # the verifier: its argv names the dir
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the export never started verifying"
            time.sleep(0.1)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.time() + 3  # the verifier would otherwise run on for several seconds
        while _children_running(str(out / ".tmp-1-")) and time.time() < deadline:
            time.sleep(0.05)
        assert not _children_running(str(out / ".tmp-1-")), children
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (out / "1").exists()
    # An interrupted export removes the model directory it created; a killed one leaves its lock (stale).
    left = sorted(p.name for p in out.iterdir() if p.name != ".tlkit.lock") if out.exists() else []
    assert FileLock(out / ".tlkit.lock").holder() is None
    if sig == signal.SIGTERM:
        assert left == [] and proc.returncode != 0
    else:
        assert len(left) == 1 and left[0].startswith(".tmp-1-")  # removed by the next export (above)
