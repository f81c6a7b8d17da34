"""tlkit.dense.evaluator and ``tlkit dense-eval``: score maps, shifted passes, scales, real weights."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from test_convert import assert_close, crops_of, finetuned_net, flatten_net

from tlkit.dense.convert import convert
from tlkit.dense.evaluator import DenseEvaluator, evaluate
from tlkit.dense.geometry import (
    dense_map_size,
    interleave,
    interleaved_size,
    resize_for_scale,
    shift_plan,
)

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_shift_plan_and_interleave() -> None:
    assert shift_plan(32) == [(0, 0)] == shift_plan(32, 32)
    assert shift_plan(32, 16) == [(0, 0), (0, 16), (16, 0), (16, 16)]
    assert len(shift_plan(32, 8)) == 16
    with pytest.raises(ValueError, match="divide"):
        shift_plan(32, 12)
    # VGG16 at 384, stride 16: the unshifted pass is 6x6, the shifted ones 5x6, 6x5, 5x5.
    assert interleaved_size({(0, 0): (6, 6), (0, 1): (6, 5), (1, 0): (5, 6), (1, 1): (5, 5)}, 2) == (11, 11)
    passes = {(a, b): np.full((1, 6 - a, 6 - b, 1), 10 * a + b) for a in (0, 1) for b in (0, 1)}
    out = interleave(passes, 2)[0, ..., 0]
    assert out.shape == (11, 11)
    assert out[0, 0] == 0 and out[0, 1] == 1 and out[1, 0] == 10 and out[1, 1] == 11 and out[10, 10] == 0


def test_resize_for_scale() -> None:
    img = np.zeros((300, 450, 3), np.uint8)
    assert resize_for_scale(img, 384).shape == (384, 576, 3)
    assert resize_for_scale(img[:, :200], 100).shape == (150, 100, 3)
    assert resize_for_scale(img, 64, "square").shape == (64, 64, 3)


def test_stride_refined_map_equals_crops_at_the_finer_step() -> None:
    """Net stride 4, stride 2: 4 shifted passes interleaved = crops every 2 pixels."""
    model = flatten_net()
    ev = DenseEvaluator(model, preprocessing="unit")
    image = np.random.default_rng(0).uniform(0, 255, (48, 50, 3)).astype("float32")
    maps = ev.score_maps(image[None], stride=2)[0]
    rows, cols = dense_map_size(ev.conversion, 48, 50, stride=2)
    assert maps.shape == (rows, cols, 5) == (9, 10, 5)
    expected = model.predict(crops_of(image / 255.0, 32, 2, rows, cols), verbose=0)
    assert_close(maps.reshape(rows * cols, 5), expected)
    coarse = ev.score_maps(image[None])[0]  # the stride-4 map is every other position
    np.testing.assert_allclose(maps[::2, ::2], coarse[: maps[::2, ::2].shape[0], : maps[::2, ::2].shape[1]], atol=1e-6)


def test_evaluate_scales_aggregation_and_batching() -> None:
    model = flatten_net()
    names = ["a", "b", "c", "d", "e"]
    ev = DenseEvaluator(convert(model), preprocessing="unit", class_names=names, batch_size=2)
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 255, s).astype("float32") for s in [(40, 60, 3), (40, 60, 3), (60, 40, 3)]]
    lines: list[str] = []
    results = ev.evaluate(images, scales=(32, 48), aggregate="mean", top=3, progress=lines.append)
    assert len(results) == 3
    assert [ln.split(" in ")[0] for ln in lines] == ["scale 32 (1/2): 32x48, 48x32", "scale 48 (2/2): 48x72, 72x48"]
    r = results[0]
    assert [m.scale for m in r.maps] == [32, 48]
    assert [m.input_size for m in r.maps] == [(32, 48), (48, 72)]
    assert [m.map_shape for m in r.maps] == [(1, 5, 5), (5, 11, 5)]
    assert r.maps[1].stride == 4 and r.maps[1].image_stride == pytest.approx((40 * 4 / 48, 60 * 4 / 72))
    # Per-scale mean over positions, then mean over scales; top-K named, best first.
    expected = np.mean([m.scores_map.mean(axis=(0, 1)) for m in r.maps], axis=0)
    np.testing.assert_allclose(r.scores, expected, rtol=1e-6)
    assert [c.index for c in r.top] == list(np.argsort(-expected)[:3])
    assert r.top[0].name == names[r.top[0].index] and r.top[0].score >= r.top[1].score
    assert results[2].maps[1].map_shape == (11, 5, 5)
    # The map at a scale is the converted net on the resized, preprocessed image; the evaluator's
    # model carries the preprocessing (a Preprocess layer in front), so it takes the raw pixels.
    x = resize_for_scale(images[0], 48)
    assert ev.conversion.model.get_layer("preprocess").mode == "unit"
    np.testing.assert_allclose(
        r.maps[1].scores_map, keras.ops.convert_to_numpy(ev.conversion.model(x[None]))[0], atol=1e-6
    )
    bare = convert(model).model  # the same net without the layer, on numpy-preprocessed pixels
    np.testing.assert_allclose(r.maps[1].scores_map, keras.ops.convert_to_numpy(bare(x[None] / 255.0))[0], atol=1e-6)
    mx = ev.evaluate(images[0], scales=(48,), aggregate="max")[0]
    np.testing.assert_allclose(mx.scores, r.maps[1].scores_map.max(axis=(0, 1)), rtol=1e-6)
    wm = r.maps[1].window_map(r.top[0].index)
    assert wm.shape == (12, 18) and wm.max() <= r.maps[1].scores_map[..., r.top[0].index].max() + 1e-6
    assert json.loads(json.dumps(r.to_dict()))["scales"][1]["map_shape"] == [5, 11, 5]


def test_image_smaller_than_the_window_is_refused() -> None:
    ev = DenseEvaluator(flatten_net(), preprocessing="unit")
    with pytest.raises(ValueError, match="smaller than the network"):
        ev.evaluate(np.zeros((40, 40, 3)), scales=(24,))


@pytest.fixture()
def run_dir(tmp_path):
    """A finetuning run directory in the pipeline's layout: best.keras + labels.json."""
    model = finetuned_net()
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    (run / "labels.json").write_text(json.dumps(["cat", "dog", "fox"]))
    return run


def _png(path, h: int = 40, w: int = 56) -> str:
    from PIL import Image

    arr = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def test_from_run_feeds_raw_pixels(run_dir, tmp_path) -> None:
    ev = DenseEvaluator.from_run(run_dir)
    assert ev.preprocessing == "none" and ev.class_names == ["cat", "dog", "fox"]
    image = np.random.default_rng(3).uniform(0, 255, (40, 44, 3)).astype("float32")
    res = ev.evaluate(image, scales=(40,), top=2)[0]
    assert res.maps[0].map_shape == (3, 4, 3) and res.top[0].name in ("cat", "dog", "fox")
    original = keras.saving.load_model(run_dir / "best.keras")
    assert_close(res.maps[0].scores_map.reshape(12, 3), original.predict(crops_of(image, 32, 4, 3, 4), verbose=0))


def test_cli_dense_eval_run(run_dir, tmp_path, capsys) -> None:
    from tlkit.cli.main import main

    image = _png(tmp_path / "img.png")
    heat = tmp_path / "out" / "heat.png"
    rc = main(
        [
            "dense-eval",
            "--run",
            str(run_dir),
            "--image",
            image,
            "--scales",
            "40,48",
            "--stride",
            "2",
            "--top",
            "2",
            "--json",
            "--heatmap",
            str(heat),
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["net_stride"] == 4 and [s["scale"] for s in report["scales"]] == [40, 48]
    assert report["scales"][0]["map_shape"] == [5, 13, 3] and report["scales"][0]["passes"] == 4
    assert len(report["top"]) == 2 and report["top"][0]["name"] in ("cat", "dog", "fox")
    assert heat.exists() and heat.stat().st_size > 1000
    rc = main(["dense-eval", "--run", str(run_dir), "--image", image, "--scales", "40"])
    out = capsys.readouterr().out
    assert rc == 0 and "map" in out and "3x7x3" in out and "rank" in out


def test_cli_dense_eval_base_and_errors(tmp_path, capsys) -> None:
    from tlkit.cli.main import main

    image = _png(tmp_path / "img.png", 32, 48)
    rc = main(
        ["dense-eval", "--base", "cifar_example", "--weights", "none", "--image", image, "--scales", "32,40", "--json"]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scales"][0]["map_shape"] == [1, 9, 10] and report["net_stride"] == 2
    assert main(["dense-eval", "--base", "cifar_example", "--weights", "none", "--image", image, "--scales", "16"]) == 2
    assert "smaller than the network" in capsys.readouterr().err
    assert main(["dense-eval", "--base", "cifar_example", "--weights", "none", "--image", image, "--stride", "3"]) == 2


# --- real weights --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_imagenet():
    # The weights ship with the package (offline): unavailable weights are a failure, not a skip.
    return DenseEvaluator.from_name("efficientnet_lite0", weights="imagenet")


@pytest.mark.parametrize("scales", [(384,), (512,), (384, 512)])
def test_efficientnet_lite0_chelsea_is_a_cat(lite0_imagenet, scales) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    res = lite0_imagenet.evaluate(skimage_data.chelsea(), scales=scales, top=5)[0]
    assert res.top[0].index in CAT_CLASSES, res.top
    # chelsea is 300x451: at 384 it is 384x577, a 12x19 feature map ("same" padding rounds
    # up) and 6x13 windows of 7x7, the last column hanging 31 px over the edge: 6x12 fit
    # ((384 - 224) // 32 + 1, (577 - 224) // 32 + 1); at 512 it is 512x770 -> 10x18 (19 before
    # windows over the edge were dropped).
    shapes = {m.scale: m.map_shape for m in res.maps}
    for scale, shape in shapes.items():
        assert shape == {384: (6, 12, 1000), 512: (10, 18, 1000)}[scale]


def test_evaluate_function_square_resize(lite0_imagenet) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    # The evaluator's conversion carries Lite0's preprocessing (a layer in front): raw pixels in.
    res = evaluate(
        lite0_imagenet.conversion,
        skimage_data.chelsea(),
        scales=(384,),
        resize="square",
        class_names=lite0_imagenet.class_names,
    )
    assert res.maps[0].map_shape == (6, 6, 1000) and res.top[0].index in CAT_CLASSES
    assert "cat" in res.top[0].name.lower() or res.top[0].name.lower() in ("tabby", "persian", "siamese")


# --- windows inside the image; bounds before allocation --------------------------------------------


@pytest.mark.parametrize("name", ["cifar_example", "allcnn_c"])
def test_maps_hold_only_windows_inside_the_image(name) -> None:
    """At every scale and stride the map has floor((side - window) / stride) + 1 positions per side
    (before, shifted passes of "same"-padded nets added positions hanging over the edge, and a
    shifted image smaller than the window crashed the pass)."""
    import tlkit
    from tlkit.dense.geometry import windows_inside

    ev = DenseEvaluator(tlkit.build(name, weights=None), compiled=False)
    s, win = ev.net_stride, ev.window
    for h, w in [(32, 32), (32, 45), (39, 36), (41, 70)]:
        for stride in sorted({s, s // 2, 1}):
            want = windows_inside(h, w, win, stride)
            assert want == ((h - win[0]) // stride + 1, (w - win[1]) // stride + 1)
            assert dense_map_size(ev.conversion, h, w, stride) == want
            got = ev.score_maps(np.zeros((1, h, w, 3), np.float32), stride).shape[1:3]
            assert tuple(got) == want, (name, h, w, stride, got)


def test_scaled_size_bounds_refuse_before_resizing(monkeypatch) -> None:
    from tlkit.dense.geometry import check_scales

    def no_resize(*args, **kwargs):
        raise AssertionError("resized although refused")

    monkeypatch.setattr("tlkit.dense.evaluator.resize_for_scale", no_resize)
    ev = DenseEvaluator(flatten_net(), preprocessing="unit", max_scaled_pixels=10_000, max_aspect=4)
    strip = np.zeros((2, 400, 3), np.uint8)  # aspect 200:1: at scale 32 it would be 32x6400
    with pytest.raises(ValueError, match=r"aspect ratio of 200:1.*32x6400.*--max-aspect.*--max-scaled-pixels"):
        ev.evaluate(strip, scales=(32,))
    with pytest.raises(ValueError, match=r"at scale 120 would become 120x160 = 19,200 pixels"):
        ev.evaluate(np.zeros((30, 40, 3), np.uint8), scales=(48, 120))
    check_scales("ok", 30, 40, (48, 80), max_scaled_pixels=10_000, max_aspect=4)  # 80x107 fits
