"""Unit tests of tlkit segment's training, config, prediction and serving pieces (no whole runs)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlkit.errors import ConfigError, RunDirError
from tlkit.segment.config import SegmentConfig, check_config, default_input_size


def test_the_loss_ignores_255_and_averages_over_the_labelled_pixels():
    import keras

    from tlkit.finetune.train import StageConfig
    from tlkit.segment.train import compile_segmenter

    inputs = keras.Input((2, 2, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    compile_segmenter(model, StageConfig(stage=1, epochs=1, lr=1e-3), 3)
    y = np.array([[[0, 1], [255, 2]]], np.int32)
    logits = np.random.default_rng(0).normal(size=(1, 2, 2, 3)).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labelled = [-log_p[0, 0, 0, 0], -log_p[0, 0, 1, 1], -log_p[0, 1, 1, 2]]
    assert float(model.loss(y, logits)) == pytest.approx(np.mean(labelled), rel=1e-6)
    # A pixel relabelled 255 changes nothing but the mean's count; all ignored: no loss.
    assert float(model.loss(np.full_like(y, 255), logits)) == 0.0


def test_checks_refuse_impossible_settings_before_tensorflow():
    check_config(SegmentConfig(data="d", input_size=(64, 96)))
    with pytest.raises(ConfigError, match="multiples of 32.*--input-size 64 96"):
        check_config(SegmentConfig(data="d", input_size=(60, 100)))
    with pytest.raises(ConfigError, match="--output-stride 12"):
        check_config(SegmentConfig(data="d", output_stride=12))
    with pytest.raises(ConfigError, match="--head"):
        check_config(SegmentConfig(data="d", head="fcn4s"))
    with pytest.raises(ConfigError, match="nothing to train"):
        check_config(SegmentConfig(data="d", epochs=0, unfreeze="0"))
    assert default_input_size("efficientnet_lite0") == (224, 224)


def test_resume_with_force_and_resume_of_a_classification_run_are_refused(tmp_path: Path):
    from tlkit.segment.train import prepare

    with pytest.raises(ConfigError, match="pass one of them"):
        prepare(SegmentConfig(data="d", runs_dir=str(tmp_path)), resume=True, force=True)
    run = tmp_path / "cls"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": "d", "base": "resnet18"}))
    with pytest.raises(RunDirError, match="classification run"):
        prepare(SegmentConfig(data="d", runs_dir=str(tmp_path), name="cls"), resume=True, force=False)
    # and the other way round: tlkit finetune --resume on a segmentation run
    from tlkit.finetune.config import FinetuneConfig
    from tlkit.finetune.pipeline import check_before_start

    (run / "config.json").write_text(json.dumps({"task": "segmentation", "data": "d", "base": "resnet18"}))
    with pytest.raises(RunDirError, match="segmentation run"):
        check_before_start(FinetuneConfig(data="d", runs_dir=str(tmp_path), name="cls"), resume=True)


def test_default_run_name_holds_base_head_and_data(tmp_path: Path):
    cfg = SegmentConfig(data="/x/pets/", runs_dir=str(tmp_path), head="unet")
    assert cfg.run_dir() == tmp_path / "efficientnet_lite0-unet-pets"


def test_history_keeps_the_mean_iou_columns_and_best_resumes_by_them(tmp_path: Path):
    from tlkit.finetune import recorder, run_files

    path = tmp_path / "history.csv"
    for e, v in enumerate((0.2, 0.5, 0.4)):
        recorder.append_history(path, {"epoch": e, "stage": 1, "loss": 1.0, "val_mean_iou": v, "seconds": 1})
    assert [r["val_mean_iou"] for r in recorder.read_history(path)] == [0.2, 0.5, 0.4]
    state = run_files.resume_from_best(tmp_path, {"best": 0.5, "next_epoch": 3, "stage": 1})
    assert state["next_epoch"] == 2


def test_segmentation_runs_are_refused_by_the_classifier_commands(tmp_path: Path):
    from tlkit.segment.export import refuse_segmentation_run

    (tmp_path / "config.json").write_text(json.dumps({"task": "segmentation", "data": "d", "base": "b"}))
    with pytest.raises(ConfigError, match="tlkit segment export"):
        refuse_segmentation_run(tmp_path)
    from tlkit.finetune.evaluation_runs import load_run

    (tmp_path / "labels.json").write_text('["background", "cat"]')
    (tmp_path / "best.keras").write_bytes(b"not read: the run is refused first")
    with pytest.raises(ConfigError, match="segmentation run: use tlkit segment"):
        load_run(tmp_path)  # tlkit evaluate/predict/export of classifiers
    (tmp_path / "config.json").write_text(json.dumps({"data": "d", "base": "b"}))
    refuse_segmentation_run(tmp_path)  # a classification run: no refusal


def test_output_names_are_unique_and_class_shares_sum_to_one():
    from tlkit.segment.predict import class_fractions, output_names

    assert output_names(["a.jpg", "x/a.png", "b.png"]) == ["a", "a-2", "b"]
    shares = class_fractions(np.array([[0, 0, 2], [2, 2, 2]]), ["bg", "cat", "dog"])
    assert list(shares) == ["dog", "bg"] and sum(shares.values()) == pytest.approx(1.0)


def test_evaluate_text_shows_every_figure_and_a_dash_for_unscored_classes():
    from tlkit.segment.evaluate import report_text

    text = report_text(
        {
            "split": "val",
            "checkpoint": "best.keras",
            "pixel_accuracy": 0.9,
            "mean_iou": 0.5,
            "boundary": {"width": 3, "mean_iou": 0.25, "pixel_accuracy": 0.75},
            "per_class": {"background": {"iou": 0.8, "pixels": 10}, "cat": {"iou": None, "pixels": 0}},
        }
    )
    assert "pixel accuracy 0.9000, mean IoU 0.5000" in text
    assert "boundary (3 px band): mean IoU 0.2500, pixel accuracy 0.7500" in text
    assert text.splitlines()[-1].split() == ["cat", "-", "0"]


def _png(h: int, w: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_serving_masks_come_back_at_the_image_size_and_mixed_sizes_are_refused():
    import keras
    import tensorflow as tf

    from tlkit.data import resize as rs
    from tlkit.segment.serving import SegmentServing, outputs_at

    inputs = keras.Input((32, 32, 3))
    # A seeded kernel: an unseeded one sometimes scores one class everywhere, leaving nothing to get wrong.
    init = keras.initializers.RandomNormal(stddev=0.05, seed=0)
    model = keras.Model(
        inputs, keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=init, name="logits")(inputs)
    )
    module = SegmentServing(model, (32, 32), max_pixels=10**6)
    got = module.serve_bytes(tf.constant([_png(20, 50), _png(20, 50, 1)]))
    assert got["mask"].dtype == tf.uint8 and got["mask"].shape == (2, 20, 50)
    assert got["scores"].shape == (2, 20, 50, 4)
    np.testing.assert_allclose(got["scores"].numpy().sum(-1), 1.0, rtol=1e-5)
    image = np.asarray(Image.open(io.BytesIO(_png(20, 50))))
    logits = model(np.asarray(rs.plain(image, (32, 32)))[None])
    want = np.argmax(tf.image.resize(logits, (20, 50)).numpy(), -1)[0]
    assert len(np.unique(want)) > 1  # a mask with something to get wrong
    np.testing.assert_array_equal(got["mask"].numpy()[0], want)
    np.testing.assert_array_equal(outputs_at(logits, (20, 50))["mask"].numpy()[0], want)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is 40x20, image_bytes\[0\] is 50x20"):
        module.serve_bytes(tf.constant([_png(20, 50), _png(20, 40)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="tlkit serving: image_bytes"):
        module.serve_bytes(tf.constant([b"not an image"]))


def test_the_export_check_finds_a_savedmodel_that_differs_from_the_model(tmp_path: Path):
    import keras
    import tensorflow as tf

    from tlkit.export.verify import VerificationError
    from tlkit.segment.export import MODEL_CARD, verify_segment_export
    from tlkit.segment.serving import SegmentServing

    def tiny(seed: int) -> keras.Model:
        inputs = keras.Input((32, 32, 3))
        init = keras.initializers.GlorotUniform(seed=seed)
        return keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=init)(inputs))

    model = tiny(0)
    module = SegmentServing(model, (32, 32), max_pixels=10**6)
    tf.saved_model.save(module, str(tmp_path), signatures=module.signatures())
    (tmp_path / MODEL_CARD).write_text(json.dumps({"input_size": [32, 32], "max_pixels": 10**6}))
    report = verify_segment_export(tmp_path, model, _png(24, 40))
    assert report["ok"] and report["probe_size"] == [24, 40]
    with pytest.raises(VerificationError, match="mask differs from the Keras model's argmax"):
        verify_segment_export(tmp_path, tiny(1), _png(24, 40))


def test_segment_help_loads_no_tensorflow():
    code = (
        "import sys, tlkit.cli.main\n"
        "for sub in ('finetune', 'evaluate', 'predict', 'export', 'sample-data'):\n"
        "    try:\n        tlkit.cli.main.main(['segment', sub, '--help'])\n"
        "    except SystemExit as e:\n        assert e.code == 0, (sub, e.code)\n"
        "print('TF_LOADED', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "--finetune-epochs" in out.stdout and "--output-stride" in out.stdout
    assert "TF_LOADED False" in out.stdout
