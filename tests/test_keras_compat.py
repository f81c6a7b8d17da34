"""Each private Keras/TensorFlow access in tlkit/_keras_compat.py, checked on real objects.

A Keras upgrade that moves one of these attributes fails here with KerasCompatError naming it,
before it fails somewhere deep in inspection, conversion, feature taps or weights loading.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from tlkit import _keras_compat as kc


def _graph():
    inp = keras.Input((8, 8, 3), name="img")
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
    a = conv(inp)
    inner = keras.Sequential([keras.layers.Dense(4, name="inner_dense")], name="inner")
    b = inner(a)
    s = keras.layers.Add(name="add")([a, b])
    return keras.Model(inp, s, name="outer"), conv, inner


def test_missing_attribute_is_named():
    with pytest.raises(kc.KerasCompatError, match=r"object\._inbound_nodes is gone in Keras"):
        kc.inbound_nodes(object())


def test_all_sublayers_reaches_into_nested_models():
    model, _, _ = _graph()
    names = [layer.name for layer in kc.all_sublayers(model)]
    assert "inner_dense" in names and "conv" in names and "outer" not in names


def test_inbound_nodes_one_per_call_and_graph_keys():
    model, conv, _ = _graph()
    other = keras.Input((8, 8, 3))
    again = keras.Model(other, conv(other))  # conv called a second time, in another model
    assert len(kc.inbound_nodes(conv)) == 2
    keys = kc.graph_node_keys(model)
    assert kc.node_key(conv, 0) in keys and kc.node_key(conv, 1) not in keys
    assert kc.node_key(conv, 1) in kc.graph_node_keys(again)


def test_nodes_by_depth_and_node_inputs():
    model, _, _ = _graph()
    by_depth = kc.nodes_by_depth(model)
    ops = {n.operation.name for nodes in by_depth.values() for n in nodes if n.operation is not None}
    assert {"conv", "inner", "add"} <= ops
    add_node = next(n for nodes in by_depth.values() for n in nodes if getattr(n.operation, "name", "") == "add")
    ins = kc.node_input_tensors(add_node)
    assert len(ins) == 2 and [kc.producer(t).name for t in ins] == ["conv", "inner"]
    x = np.ones((1, 8, 8, 4), "float32")
    args, kwargs = kc.node_call_arguments(add_node, {id(ins[0]): x, id(ins[1]): 2 * x})
    np.testing.assert_array_equal(add_node.operation(*args, **kwargs), 3 * x)


def test_layer_graph_and_sequential_graph():
    model, _, inner = _graph()
    assert kc.has_layer_graph(model)

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert not kc.has_layer_graph(Sub())
    graph = kc.sequential_graph(inner)
    assert graph is not None and kc.has_layer_graph(graph) and len(kc.nodes_by_depth(graph)) == 2
    assert kc.sequential_graph(keras.Sequential([keras.layers.Dense(2)])) is None  # no input shape yet


def test_producer_of_a_symbolic_tensor():
    model, _, _ = _graph()
    assert kc.producer(model.output).name == "add"
    assert kc.producer(np.zeros(2)) is None


def test_to_snake_case_matches_saved_group_names():
    assert kc.to_snake_case("BatchNormalization") == "batch_normalization"
    assert kc.to_snake_case("Conv2D") == "conv2d"


def test_keras_home_as_points_and_restores(tmp_path):
    from keras.src.backend import config as kconfig

    before = kconfig._KERAS_DIR
    with kc.keras_home_as(tmp_path):
        assert Path(kconfig._KERAS_DIR) == tmp_path
    assert kconfig._KERAS_DIR == before


def test_op_determinism_round_trip():
    was = kc.op_determinism()
    try:
        kc.set_op_determinism(True)
        assert kc.op_determinism() is True
        kc.set_op_determinism(False)
        assert kc.op_determinism() is False
    finally:
        kc.set_op_determinism(was)
    assert kc.op_determinism() == was


def test_no_other_module_reaches_into_keras_privates():
    import re

    import tlkit

    root = Path(tlkit.__file__).parent
    pattern = re.compile(
        r"keras\.src|keras_src|\._(inbound_nodes|outbound_nodes|nodes_by_depth|nodes\b|"
        r"flatten_layers|functional|keras_history|KERAS_DIR)|\.arguments\.|"
        r"tensorflow\.python"
    )
    hits = [
        f"{p.relative_to(root)}:{i}"
        for p in sorted(root.rglob("*.py"))
        if p.name != "_keras_compat.py"
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith(("#", "``"))
    ]
    assert hits == []


def test_seed_generators_finds_dropout_state_in_nested_models():
    import keras

    from tlkit._keras_compat import seed_generators

    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dropout(0.2)])
    gens = seed_generators(outer)
    assert len(gens) == 2  # one per Dropout, the nested model's included
    assert all(tuple(g.state.shape) == (2,) for g in gens)
