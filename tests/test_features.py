"""Feature taps, chunked/resumable extraction, linear probes, and cached head training."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit import cli
from tlkit.extract import build_tap_model, extract, load_features
from tlkit.features import extractor
from tlkit.heads import build_classifier


def _folder(root: Path, n: int = 10, size: int = 40) -> Path:
    rng = np.random.default_rng(3)
    for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 50, (size, size, 3)) + np.asarray(colour)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / c / f"{i:02d}.png")
    return root


def test_vgg16_tap_dimensions():
    taps = extractor(tlkit.build("vgg16"), ["fc7", "fc6", "pool5"], pooling="none")
    assert [tuple(t.shape[1:]) for t in taps.outputs] == [(4096,), (4096,), (7 * 7 * 512,)]
    pooled = extractor(tlkit.build("vgg16_tlkit"), ["pool5"], pooling="avg")
    assert tuple(pooled.outputs[0].shape[1:]) == (512,)
    keras.backend.clear_session()


def test_efficientnet_lite0_penultimate_is_1280():
    model, meta = build_tap_model("efficientnet_lite0", ["penultimate"], weights=None)
    assert tuple(model.outputs[0].shape[1:]) == (1280,)
    assert meta["resolved_layers"] == ["avg_pool"]
    small, meta = build_tap_model("efficientnet_lite0", ["penultimate"], weights=None, input_size=(64, 64))
    assert tuple(small.outputs[0].shape[1:]) == (1280,) and meta["resolved_layers"] == ["top_activation"]


def test_taps_reach_into_the_nested_base_of_a_finetuned_model(tmp_path):
    model = build_classifier("cifar_example", num_classes=3, weights=None, input_size=(32, 32))
    model.save(tmp_path / "best.keras")
    loaded = keras.saving.load_model(tmp_path / "best.keras")  # what `tlkit finetune` leaves behind
    taps = extractor(loaded, ["conv1", "penultimate"], pooling="max")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    conv1, pen = taps.predict(x, verbose=0)
    base = loaded.get_layer("base")
    inner = keras.Model(base.input, base.get_layer("conv1").output)
    want = np.asarray(inner(loaded.get_layer("preprocess")(x))).max(axis=(1, 2))
    np.testing.assert_allclose(conv1, want, rtol=1e-6, atol=1e-6)
    assert pen.shape == (2, 12)  # the head's avg_pool on cifar_example's 12 channels
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        extractor(loaded, ["fc9"])


def test_extracted_features_equal_model_predict(tmp_path):
    data = _folder(tmp_path / "data", n=6)
    out = tmp_path / "f.parquet"
    res = extract("efficientnet_lite0", ["penultimate", "top"], str(data), out, input_size=(64, 64), progress=False)
    assert res.rows == 12 and res.dims == {"penultimate": 1280, "top": 1280}
    feats, rows, meta = load_features(out)
    assert meta["model"] == "efficientnet_lite0" and meta["preprocessing"] == "lite"
    assert meta["input_size"] == [64, 64] and meta["tlkit_version"] == tlkit.__version__
    model, _ = build_tap_model("efficientnet_lite0", ["penultimate", "top"], input_size=(64, 64))
    from tlkit.data import images_dataset

    images = np.concatenate([np.asarray(b) for b in images_dataset(rows["path"].tolist(), image_size=(64, 64),
                                                                   batch_size=5)])
    want = model.predict(images, verbose=0)
    for name in ("penultimate", "top"):
        assert np.abs(feats[name] - want[name]).max() <= 1e-5
    np.testing.assert_allclose(feats["penultimate"], feats["top"], atol=1e-6)  # avg_pool == pooled top map


def test_interrupted_extraction_resumes_to_the_same_file(tmp_path):
    data = _folder(tmp_path / "data", n=10)
    kw = dict(weights=None, input_size=(32, 32), chunk_rows=6, batch_size=4, progress=False)
    keras.utils.set_random_seed(0)  # random weights, but the same in each of the three runs
    full = extract("mobilenet_v2", ["avg_pool"], str(data), tmp_path / "full.parquet", **kw)
    part = tmp_path / "part.parquet"
    keras.utils.set_random_seed(0)
    first = extract("mobilenet_v2", ["avg_pool"], str(data), part, stop_after_chunks=2, **kw)
    assert first.rows == 12 and not part.exists()  # interrupted: only complete chunks on disk
    keras.utils.set_random_seed(0)
    again = extract("mobilenet_v2", ["avg_pool"], str(data), part, resume=True, **kw)
    assert again.new_rows == 8 and again.rows == 20 == full.rows
    assert part.read_bytes() == (tmp_path / "full.parquet").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        extract("mobilenet_v2", ["avg_pool"], str(data), part, **kw)


def test_npz_output(tmp_path):
    data = _folder(tmp_path / "data", n=4)
    extract("mobilenet_v2", ["avg_pool"], str(data), tmp_path / "f.npz", weights=None, input_size=(32, 32),
            progress=False)
    feats, rows, meta = load_features(tmp_path / "f.npz")
    assert feats["avg_pool"].shape == (8, 1280) and list(rows["label"].unique()) == ["blue", "red"]


def test_extract_and_probe_digits_reach_93_percent(tmp_path, capsys):
    out = tmp_path / "digits.parquet"
    assert cli.main(["extract", "--base", "efficientnet_lite0", "--layer", "penultimate", "--data",
                     "builtin:digits", "--input-size", "64", "64", "--out", str(out)]) == 0
    assert "wrote 1797 rows" in capsys.readouterr().out
    assert cli.main(["probe", str(out), "--out", str(tmp_path / "probe"), "--export", str(tmp_path / "run"),
                     "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["top1"] >= 0.93 and m["count"] == 359
    assert (tmp_path / "probe" / "confusion.png").stat().st_size > 5000
    # The exported head reproduces the probe's probabilities on the tapped network.
    from tlkit.evaluation_runs import load_run
    from tlkit.probe import probe_scores

    model, labels, _ = load_run(tmp_path / "run")
    assert labels == [str(d) for d in range(10)]
    feats, rows, _ = load_features(out)
    import joblib

    saved = joblib.load(tmp_path / "probe" / "probe.joblib")
    from tlkit.data import images_dataset

    idx = np.arange(8)
    images = next(iter(images_dataset(rows["path"].iloc[idx].tolist(), image_size=(64, 64), batch_size=8)))
    np.testing.assert_allclose(model.predict(np.asarray(images), verbose=0),
                               probe_scores(saved["model"], feats["penultimate"][idx]), atol=1e-4)
