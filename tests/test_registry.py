"""The registry is data: names, aliases, filters, and the input-size contract."""

import pytest

import tlkit
from tlkit.registry import PREPROCESSING_MODES, ModelSpec, UnknownModelError, get_spec, list_models, register


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
