"""Image-classifier metadata in .tflite files (tlkit.export.tflite_metadata), used for real.

A tiny classifier converted twice, as the export does (float32 input) and fully integer
(uint8 input and output, as a full-integer variant is), gets metadata from MediaPipe's writer
and runs in MediaPipe Tasks' ImageClassifier in this process, next to TensorFlow; the ported
parser-version rule is checked field by field; without MediaPipe the export still writes its
models and says in one line why they have no metadata.
"""

from __future__ import annotations

import json
import sys
import types

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data

from tlkit.cli.commands.export import _print_tflite
from tlkit.export import tflite_metadata as tm
from tlkit.export.tflite import save_tflite

LABELS = ["ant", "bee", "cicada"]


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)  # RGB 0..255 in, normalised inside, as tlkit's models
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """float32-input and uint8-input/output .tflite bytes of one model, and the photo at its size."""
    model, scratch = _model(), tmp_path_factory.mktemp("tflite_md")

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="pixels")])
    def predict_pixels(pixels):
        return {"scores": model(pixels, training=False)}

    module = tf.Module()
    module.f, module.v = predict_pixels, list(predict_pixels.get_concrete_function().variables)
    tf.saved_model.save(module, str(scratch / "sm"), signatures={"predict_pixels": predict_pixels})
    photo = np.asarray(Image.fromarray(data.chelsea()).resize((32, 32), Image.BILINEAR))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(16):
            yield [rng.integers(0, 256, (1, 32, 32, 3)).astype(np.float32)]
        for fill in (0, 255):  # the input's whole range: uint8 input scale 1, zero point 0 (raw pixels)
            yield [np.full((1, 32, 32, 3), fill, np.float32)]

    out = {"model": model, "photo": photo}
    for kind in ("float32", "uint8"):
        c = tf.lite.TFLiteConverter.from_saved_model(str(scratch / "sm"), signature_keys=["predict_pixels"])
        if kind == "uint8":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = representative
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.uint8
        out[kind] = c.convert()
    return out


@pytest.mark.parametrize("kind", ["float32", "uint8"])
def test_metadata_makes_the_model_run_in_mediapipe(converted, kind, tmp_path):
    import mediapipe as mp
    from ai_edge_litert.interpreter import Interpreter
    from mediapipe.tasks.python import BaseOptions, vision

    assert tm.embedded_labels(converted[kind]) is None  # a plain converted model has none
    raw = tm.add_metadata(converted[kind], LABELS, name="tiny", description="three insects")
    assert tm.embedded_labels(raw) == LABELS
    from mediapipe.tasks.python.metadata.metadata import MetadataDisplayer  # importable once tm stood in

    md = json.loads(MetadataDisplayer.with_model_buffer(raw).get_metadata_json())
    assert md["name"] == "tiny" and md["min_parser_version"] == "1.0.0"
    (image,) = md["subgraph_metadata"][0]["input_tensor_metadata"]
    assert image["content"]["content_properties"] == {"color_space": "RGB"}
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    (scores,) = md["subgraph_metadata"][0]["output_tensor_metadata"]
    assert scores["associated_files"][0]["name"] == "labels.txt"
    assert scores["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"

    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(raw)
    interp = Interpreter(model_path=str(path))
    assert interp.get_input_details()[0]["dtype"] == getattr(np, kind)
    if kind == "uint8":  # raw pixels in: so MediaPipe's mean 0, std 1 holds for uint8 input too
        assert interp.get_input_details()[0]["quantization"] == (1.0, 0)
    q = interp.get_output_details()[0]["quantization"]
    x = converted["photo"][None].astype(getattr(np, kind))
    ref = interp.get_signature_runner("predict_pixels")(pixels=x)["scores"][0]
    ref = (ref.astype(np.float32) - q[1]) * q[0] if kind == "uint8" else ref
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=5)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        got = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=converted["photo"]))
    cats = got.classifications[0].categories
    assert [c.category_name for c in cats] == [LABELS[i] for i in np.argsort(-ref, kind="stable")]
    np.testing.assert_allclose([c.score for c in cats], ref[[c.index for c in cats]], atol=1e-6)
    keras_scores = np.asarray(converted["model"](x.astype(np.float32)))[0]
    assert np.abs(ref - keras_scores).max() < (1e-4 if kind == "float32" else 0.05)


def _metadata(**fields) -> bytes:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md, sub, tensor = fb.ModelMetadataT(), fb.SubGraphMetadataT(), fb.TensorMetadataT()
    for key, value in fields.items():
        owner, name = key.split("__")
        setattr({"sub": sub, "tensor": tensor}[owner], name, value(fb))
    sub.inputTensorMetadata, md.subgraphMetadata = [tensor], [sub]
    b = flatbuffers.Builder(0)
    b.Finish(md.Pack(b), b"M001")
    return bytes(b.Output())


def _file(kind: str, version: str | None = None):
    def make(fb):
        f = fb.AssociatedFileT()
        f.name, f.type, f.version = "f.txt", getattr(fb.AssociatedFileType, kind), version
        return [f]

    return make


def _unit(option: str):
    def make(fb):
        u = fb.ProcessUnitT()
        u.optionsType = getattr(fb.ProcessUnitOptions, option)
        u.options = getattr(fb, f"{option}T")()
        return [u]

    return make


@pytest.mark.parametrize(
    "fields, version",
    [
        ({}, "1.0.0"),
        ({"tensor__associatedFiles": _file("TENSOR_AXIS_LABELS")}, "1.0.0"),
        ({"tensor__processUnits": _unit("NormalizationOptions")}, "1.0.0"),
        ({"tensor__associatedFiles": _file("VOCABULARY")}, "1.0.1"),
        ({"sub__inputProcessUnits": lambda fb: []}, "1.1.0"),  # present though empty counts
        ({"tensor__processUnits": _unit("BertTokenizerOptions")}, "1.1.0"),
        ({"sub__outputTensorGroups": lambda fb: []}, "1.2.0"),
        ({"tensor__processUnits": _unit("RegexTokenizerOptions")}, "1.2.1"),
        ({"sub__associatedFiles": _file("SCANN_INDEX_FILE")}, "1.4.0"),
        (
            {"tensor__associatedFiles": _file("TENSOR_AXIS_LABELS", "2"), "sub__inputProcessUnits": lambda fb: []},
            "1.4.1",
        ),
        ({"sub__customMetadata": lambda fb: [], "tensor__associatedFiles": _file("VOCABULARY")}, "1.5.0"),
    ],
)
def test_min_parser_version_follows_mediapipes_rule(fields, version):
    assert tm.min_parser_version(_metadata(**fields)) == version


def test_min_parser_version_refuses_a_buffer_that_is_not_metadata():
    with pytest.raises(ValueError, match="not a valid"):
        tm.min_parser_version(b"\0" * 16)


def test_the_port_stands_in_only_where_mediapipe_lacks_its_compiled_module(monkeypatch):
    real = types.ModuleType(tm._PYWRAP_VERSION_MODULE)
    monkeypatch.setitem(sys.modules, tm._PYWRAP_VERSION_MODULE, real)
    tm._install_parser_version_shim()
    assert sys.modules[tm._PYWRAP_VERSION_MODULE] is real  # a mediapipe that ships it keeps its own
    monkeypatch.delitem(sys.modules, tm._PYWRAP_VERSION_MODULE)
    tm._install_parser_version_shim()
    assert sys.modules[tm._PYWRAP_VERSION_MODULE].GetMinimumMetadataParserVersion is tm.min_parser_version


def test_without_mediapipe_the_export_writes_plain_models_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError, as without the extra
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "labels.txt").write_text("ant\nbee\ncicada\n")
    card = save_tflite(_model(), tmp_path, size=(32, 32))
    meta = card["metadata"]
    assert meta["embedded"] is False and 'pip install "tlkit[deploy]"' in meta["reason"]
    assert "mediapipe" in meta["reason"]
    for variant in ("float32", "int8"):
        raw = (tmp_path / "tflite" / f"model_{variant}.tflite").read_bytes()
        assert raw[4:8] == b"TFL3" and tm.embedded_labels(raw) is None
    _print_tflite(card, tmp_path)
    out, err = capsys.readouterr()
    assert "with image-classifier metadata" not in out
    assert err.splitlines() == [f"tlkit export: TFLite metadata skipped: {meta['reason']}"]


def test_the_check_runs_litert_and_falls_back_to_tf_lite_without_it(converted, tmp_path, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    from tlkit.export.verify_tflite import _tflite_interpreter

    path = tmp_path / "m.tflite"
    path.write_bytes(converted["float32"])
    x = converted["photo"][None].astype(np.float32)
    litert = _tflite_interpreter(path)
    assert isinstance(litert, Interpreter)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # as without the deploy extra
    fallback = _tflite_interpreter(path)
    assert isinstance(fallback, tf.lite.Interpreter) and not isinstance(fallback, Interpreter)
    a, b = (i.get_signature_runner("predict_pixels")(pixels=x)["scores"] for i in (litert, fallback))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_check_catches_embedded_labels_that_are_not_labels_txt(converted, tmp_path):
    (tmp_path / "model_float32.tflite").write_bytes(
        tm.add_metadata(converted["float32"], LABELS, name="t", description="d")
    )
    (tmp_path / "model_int8.tflite").write_bytes(converted["float32"])  # no metadata: nothing to compare
    assert tm.embedded_label_problems(tmp_path, LABELS) == []
    assert tm.embedded_label_problems(tmp_path, ["ant", "cicada", "bee"]) == [
        "model_float32.tflite's embedded labels differ from labels.txt"
    ]
