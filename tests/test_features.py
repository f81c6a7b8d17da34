"""Feature taps, chunked/resumable extraction, linear probes, and cached head training."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit.cli import main as cli
from tlkit.errors import DataError, ModelError, WeightsError
from tlkit.features.extract import build_tap_model, extract
from tlkit.features.store import load_features
from tlkit.features.taps import extractor
from tlkit.finetune.heads import build_classifier


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


@pytest.mark.slow
def test_extracted_features_equal_model_predict(tmp_path):
    data = _folder(tmp_path / "data", n=6)
    out = tmp_path / "f.parquet"
    res = extract("efficientnet_lite0", ["penultimate"], str(data), out, input_size=(64, 64), progress=False)
    assert res.rows == 12 and res.dims == {"penultimate": 1280}
    feats, rows, meta = load_features(out)
    assert meta["model"] == "efficientnet_lite0" and meta["preprocessing"] == "lite"
    assert meta["input_size"] == [64, 64] and meta["tlkit_version"] == tlkit.__version__
    # At 64x64 penultimate is the pooled top map: asking for both names one layer twice.
    with pytest.raises(ModelError, match="penultimate and --layer top are the same layer .* at --input-size 64 64"):
        build_tap_model("efficientnet_lite0", ["penultimate", "top"], input_size=(64, 64))
    model, _ = build_tap_model("efficientnet_lite0", ["top"], input_size=(64, 64))
    from tlkit.data.pipeline import images_dataset

    images = np.concatenate(
        [np.asarray(b) for b in images_dataset(rows["path"].tolist(), image_size=(64, 64), batch_size=5)]
    )
    want = model.predict(images, verbose=0)
    assert np.abs(feats["penultimate"] - want["top"]).max() <= 1e-5  # avg_pool == pooled top map


@pytest.mark.slow
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
    extract(
        "mobilenet_v2", ["avg_pool"], str(data), tmp_path / "f.npz", weights=None, input_size=(32, 32), progress=False
    )
    feats, rows, meta = load_features(tmp_path / "f.npz")
    assert feats["avg_pool"].shape == (8, 1280) and list(rows["label"].unique()) == ["blue", "red"]


@pytest.mark.slow
def test_extract_and_probe_digits_reach_93_percent(tmp_path, capsys):
    out = tmp_path / "digits.parquet"
    assert (
        cli.main(
            [
                "extract",
                "--base",
                "efficientnet_lite0",
                "--layer",
                "penultimate",
                "--data",
                "builtin:digits",
                "--input-size",
                "64",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote 1797 rows" in capsys.readouterr().out
    assert (
        cli.main(["probe", str(out), "--out", str(tmp_path / "probe"), "--export", str(tmp_path / "run"), "--json"])
        == 0
    )
    m = json.loads(capsys.readouterr().out)
    assert m["top1"] >= 0.93 and m["count"] == 359
    assert (tmp_path / "probe" / "confusion.png").stat().st_size > 5000
    # The exported head reproduces the probe's probabilities on the tapped network.
    from tlkit.features.probe import probe_scores
    from tlkit.finetune.evaluation_runs import load_run

    model, labels, _ = load_run(tmp_path / "run")
    assert labels == [str(d) for d in range(10)]
    feats, rows, _ = load_features(out)
    import joblib

    saved = joblib.load(tmp_path / "probe" / "probe.joblib")
    from tlkit.data.pipeline import images_dataset

    idx = np.arange(8)
    images = next(iter(images_dataset(rows["path"].iloc[idx].tolist(), image_size=(64, 64), batch_size=8)))
    np.testing.assert_allclose(
        model.predict(np.asarray(images), verbose=0), probe_scores(saved["model"], feats["penultimate"][idx]), atol=1e-4
    )


def test_random_weights_are_seeded_recorded_and_leave_global_random_state_alone():
    import random

    random.seed(123)
    np.random.seed(123)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    a, meta_a = build_tap_model("cifar_example", ["penultimate"], weights=None, seed=0)
    assert (random.random(), np.random.rand()) == (expect_py, expect_np)  # the caller's streams go on
    b, meta_b = build_tap_model("cifar_example", ["penultimate"], weights=None, seed=0)
    _, meta_c = build_tap_model("cifar_example", ["penultimate"], weights=None, seed=1)
    assert meta_a["weights_seed"] == 0 and meta_a["weights_sha256"] == meta_b["weights_sha256"]
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert meta_c["weights_sha256"] != meta_a["weights_sha256"]
    _, pretrained = build_tap_model("efficientnet_lite0", ["penultimate"], input_size=(32, 32), seed=5)
    assert pretrained["weights_seed"] is None  # the seed only draws random weights


def _old_style(features: Path, **changes) -> None:
    """Rewrite a features file's (or part's) metadata as an older tlkit, or another network, would have."""
    import pyarrow.parquet as pq

    from tlkit.features.store import META_KEY

    table = pq.read_table(features)
    meta = json.loads(table.schema.metadata[META_KEY])
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), features)


def test_unrecorded_random_weights_are_refused_for_resume_and_export(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=6)
    kw = {"weights": None, "input_size": (32, 32), "chunk_rows": 4, "batch_size": 4, "progress": False}
    out = tmp_path / "f.parquet"
    extract("cifar_example", ["penultimate"], str(data), out, stop_after_chunks=1, **kw)
    part = out.with_name(out.name + ".parts") / "part-00000.parquet"
    _old_style(part, weights_seed=None, weights_sha256=None)  # as written before the seed was recorded
    with pytest.raises(DataError, match="seed was not recorded.*--force"):
        extract("cifar_example", ["penultimate"], str(data), out, resume=True, **kw)
    extract("cifar_example", ["penultimate"], str(data), out, force=True, **kw)
    _old_style(out, weights_seed=None, weights_sha256=None)
    # The CLI refuses before training the probe; the library refuses before writing the run.
    assert (
        cli.main(["probe", str(out), "--out", str(tmp_path / "probe"), "--export", str(tmp_path / "run"), "--cv", "2"])
        == 2
    )
    assert "seed was not recorded" in capsys.readouterr().err and not (tmp_path / "probe").exists()
    from tlkit.features.probe import attach_head, probe

    probe(out, tmp_path / "probe", cv=2)
    with pytest.raises(WeightsError, match="seed was not recorded"):
        attach_head(tmp_path / "probe", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_export_refuses_a_rebuilt_network_with_other_weights(tmp_path):
    from tlkit.features.probe import attach_head, probe

    data = _folder(tmp_path / "data", n=6)
    out = tmp_path / "f.parquet"
    extract("cifar_example", ["penultimate"], str(data), out, weights=None, progress=False)
    _old_style(out, weights_sha256="0123456789abcdef")  # e.g. a weights file changed since extraction
    probe(out, tmp_path / "probe", cv=2)
    with pytest.raises(WeightsError, match="not the network that extracted its features"):
        attach_head(tmp_path / "probe", tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "base,layer,native,other", [("vgg16", "fc7", "224x224", "pool5"), ("lenet5", "fc6", "32x32", "pool2")]
)
def test_a_head_layer_at_another_size_names_the_fixed_input(base, layer, native, other):
    with pytest.raises(ModelError) as err:
        build_tap_model(base, [layer], weights=None, input_size=(64, 64))
    msg = str(err.value)
    assert f"layer {layer!r} of {base} is in its fully connected head, which fixes the input at {native}" in msg
    assert f"--input-size {native.replace('x', ' ')}" in msg and f"tap {other}" in msg
    with pytest.raises(ModelError, match="no layer 'fc9'"):  # a name that is nowhere stays "no layer"
        build_tap_model(base, ["fc9"], weights=None, input_size=(64, 64))
    keras.backend.clear_session()
