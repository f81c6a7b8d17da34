"""The registry is data: names, aliases, filters, and the input-size contract."""

import pytest

import tlkit
from tlkit.registry import (
    PREPROCESSING_MODES,
    ModelSpec,
    UnknownModelError,
    get_spec,
    list_models,
    register,
)


def test_glob_filter():
    names = [s.name for s in tlkit.list_models("resnet*v2")]
    assert names == sorted(names)
    assert {"resnet18v2", "resnet34v2", "resnet50v2", "resnet101v2", "resnet152v2"} <= set(names)
    assert all(n.startswith("resnet") and n.endswith("v2") for n in names)


def test_aliases_resolve_to_the_same_spec():
    assert get_spec("vgg_a") is get_spec("vgg11")
    assert get_spec("VGG-16") is get_spec("vgg16")


def test_layer_aliases():
    assert get_spec("vgg16").resolve_layer("fc7") == "fc2"
    assert get_spec("vgg16_tlkit").resolve_layer("fc7") == "fc7"
    assert get_spec("resnet50").resolve_layer("penultimate") == "avg_pool"
    assert get_spec("resnet50").resolve_layer("some_raw_layer") == "some_raw_layer"


def test_unknown_name_suggests():
    with pytest.raises(UnknownModelError, match="Did you mean: .*vgg16"):
        get_spec("vgg61")


def test_duplicate_registration_refused():
    spec = get_spec("vgg16")
    with pytest.raises(ValueError, match="already registered"):
        register(spec)


def test_bad_preprocessing_refused():
    with pytest.raises(ValueError, match="preprocessing"):
        register(ModelSpec(name="x_bad", family="x", builder="m:f", input_shape=(1, 1, 1), preprocessing="bgr"))


def test_every_spec_is_consistent():
    specs = list_models()
    assert len(specs) >= 40
    for s in specs:
        assert s.preprocessing in PREPROCESSING_MODES
        assert ":" in s.builder
        assert len(s.input_shape) == 3
        if s.params is not None:
            assert s.params_source, f"{s.name}: a parameter count must name its source"
        assert "classifier" in s.layers or s.family == "allcnn", s.name


def test_fixed_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"fixes its input to 224x224.*got 256x256"):
        tlkit.build("vgg16", input_shape=(256, 256, 3))


def test_bad_shapes_refused():
    with pytest.raises(ValueError, match="input_shape"):
        tlkit.build("resnet50", input_shape=(0, 3))
    with pytest.raises(ValueError, match="num_classes"):
        tlkit.build("resnet50", num_classes=0)


@pytest.mark.slow
def test_a_users_spec_registered_first_leaves_every_built_in(tmp_path):
    # In a fresh process, so that nothing has loaded the catalog yet: the user's register() comes first.
    import os
    import subprocess
    import sys

    (tmp_path / "mymodels.py").write_text(
        "import keras\n"
        "def tiny(*, num_classes=3, input_shape=(32, 32, 3), weights=None, include_top=True):\n"
        "    x = inputs = keras.Input(input_shape)\n"
        "    x = keras.layers.Conv2D(4, 3, name='conv1')(x)\n"
        "    x = keras.layers.GlobalAveragePooling2D(name='avg_pool')(x)\n"
        "    return keras.Model(inputs, keras.layers.Dense(num_classes, name='predictions')(x), name='tiny')\n"
    )
    script = (
        "import tlkit\n"
        "spec = tlkit.ModelSpec(name='my_tiny', family='mine', builder='mymodels:tiny', input_shape=(32, 32, 3),\n"
        "                       preprocessing='unit')\n"
        "tlkit.register_model(spec)\n"
        "names = {s.name for s in tlkit.list_models()}\n"
        "assert {'my_tiny', 'resnet50', 'vgg16', 'efficientnet_lite0', 'lenet5'} <= names, sorted(names)[:5]\n"
        "assert len(names) > 40, len(names)\n"
        "builders = {s.name: tlkit.registry.load_builder(s) for s in tlkit.list_models()}\n"
        "assert all(callable(b) for b in builders.values()) and len(builders) == len(names)\n"
        "assert tlkit.build('efficientnet_lite2', input_shape=(64, 64, 3), include_top=False).output_shape\\\n"
        "    == (None, 2, 2, 1280)\n"
        "assert tlkit.build('lenet5').output_shape == (None, 10)\n"
        "assert tlkit.build('my_tiny', num_classes=3).output_shape == (None, 3)\n"
        "assert tlkit.get_spec('vgg16').resolve_layer('fc7') == 'fc2'\n"
        "try:\n"
        "    tlkit.register_model(tlkit.ModelSpec(name='resnet50', family='mine', builder='mymodels:tiny',\n"
        "                                         input_shape=(32, 32, 3), preprocessing='unit'))\n"
        "except tlkit.TlkitError as exc:\n"
        "    assert 'already registered' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('a built-in name was taken')\n"
        "print('ok', len(names))\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")
