"""Every use of a private Keras (or TensorFlow) attribute, behind a named function.

tlkit reads a model's layer graph (receptive fields, FC->conv conversion, feature taps)
and adjusts two process settings that Keras and TensorFlow expose only privately. Those
attributes may move in any Keras release; each function here has a test in
``tests/test_keras_compat.py`` that fails with :class:`KerasCompatError`, naming the attribute,
when one does. Nothing else in tlkit touches ``keras.src`` or an underscore attribute of a Keras object.

Checked against Keras 3.15 / TensorFlow 2.21.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class KerasCompatError(RuntimeError):
    """A private Keras/TensorFlow attribute tlkit relies on is gone (a bug to fix here, not a user error)."""


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        import keras

        raise KerasCompatError(
            f"{type(obj).__name__}.{name} is gone in Keras {keras.__version__}: update tlkit/_keras_compat.py"
        ) from None


# --- the layer graph --------------------------------------------------------------------


def all_sublayers(model: Any) -> list[Any]:
    """Every layer inside ``model``, nested models' layers included (not ``model`` itself)."""
    return list(_attr(model, "_flatten_layers")(include_self=False, recursive=True))


def seed_generators(model: Any) -> list[Any]:
    """The ``SeedGenerator`` objects (dropout's) of ``model`` and every layer inside it, in layer order.

    Keras keeps them in each layer's private ``_seed_generators`` list and saves their state in no
    ``.keras`` file, so a resumed run re-derives it (:func:`tlkit.finetune.train.reseed`).
    """
    found: list[Any] = []
    for layer in [model, *all_sublayers(model)]:
        found.extend(getattr(layer, "_seed_generators", []))
    return found


def inbound_nodes(layer: Any) -> list[Any]:
    """The nodes where ``layer`` was called, one per call, in call order."""
    return list(_attr(layer, "_inbound_nodes"))


def graph_node_keys(model: Any) -> set[str]:
    """The keys of the nodes of a functional ``model``'s own graph (``"<id(layer)>_ib-<index>"``)."""
    return set(getattr(model, "_nodes", set()))


def node_key(layer: Any, index: int) -> str:
    """The key Keras gives the ``index``-th call of ``layer`` in a functional graph."""
    return f"{id(layer)}_ib-{index}"


def nodes_by_depth(graph: Any) -> dict[int, list[Any]]:
    """A functional graph's nodes by depth (0 = output side)."""
    return dict(_attr(graph, "_nodes_by_depth"))


def has_layer_graph(model: Any) -> bool:
    """Whether ``model`` is functional (its graph can be walked); False for subclassed models."""
    return hasattr(model, "_nodes_by_depth") and hasattr(model, "inputs")


def sequential_graph(model: Any) -> Any:
    """The functional graph inside a built ``keras.Sequential``; None before it knows its input shape."""
    return _attr(model, "_functional")


def producer(tensor: Any) -> Any:
    """The layer or operation that produced a symbolic ``tensor``; None for an input or a plain tensor."""
    hist = getattr(tensor, "_keras_history", None)
    return hist.operation if hist is not None else None


def node_input_tensors(node: Any) -> list[Any]:
    """The symbolic tensors a node was called on, in argument order."""
    return list(_attr(_attr(node, "arguments"), "keras_tensors"))


def node_call_arguments(node: Any, values: dict[int, Any]) -> tuple[tuple, dict]:
    """The node's original call arguments with each input tensor replaced by ``values[id(tensor)]``."""
    return _attr(_attr(node, "arguments"), "fill_in")(values)


# --- internals used by weights and saving -------------------------------------------------


def to_snake_case(name: str) -> str:
    """Keras' own snake_case of a class name (the group names it writes in ``.weights.h5``)."""
    try:
        from keras.src.utils.naming import to_snake_case as impl
    except ImportError as exc:
        raise KerasCompatError(f"keras.src.utils.naming.to_snake_case is gone: {exc}") from None
    return impl(name)


@contextlib.contextmanager
def keras_home_as(home: Path) -> Iterator[None]:
    """Point Keras' cache directory (read from ``KERAS_HOME`` once, at import) at ``home`` for the duration."""
    try:
        from keras.src.backend import config as kconfig
    except ImportError as exc:
        raise KerasCompatError(f"keras.src.backend.config is gone: {exc}") from None
    old = _attr(kconfig, "_KERAS_DIR")
    if old is None or Path(old).expanduser() == home:
        yield
        return
    kconfig._KERAS_DIR = str(home)
    try:
        yield
    finally:
        kconfig._KERAS_DIR = old


# --- process settings that only have a private getter --------------------------------------


def _tf_config() -> Any:
    try:
        from tensorflow.python.framework import config
    except ImportError as exc:
        raise KerasCompatError(f"tensorflow.python.framework.config is gone: {exc}") from None
    return config


def op_determinism() -> bool:
    """Whether TensorFlow's op determinism is on (TF has a public setter, no public getter)."""
    return bool(_attr(_tf_config(), "is_op_determinism_enabled")())


def set_op_determinism(enabled: bool) -> None:
    """Turn TensorFlow's op determinism on or off (off has no public API)."""
    config = _tf_config()
    _attr(config, "enable_op_determinism" if enabled else "disable_op_determinism")()
