"""Reading a Keras layer graph for FC->conv conversion: node order, static shapes, tensor kinds.

The kinds say what a tensor of the converted graph is (a feature map, whole-image
context, or a head's per-image vector still held as a map); :mod:`tlkit.dense.convert`
walks the graph with them and :mod:`tlkit.dense.head_ops` converts the head's layers.
Private Keras access goes through :mod:`tlkit._keras_compat`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras

from tlkit import _keras_compat as _kc
from tlkit.errors import ConversionError

# Layer kinds along a tensor of the converted graph:
SPATIAL = "spatial"  # a feature map: slides with the input
GLOBAL = "global"  # derived from a body's global pooling (squeeze-excitation): whole-image context
FLAT = "flat"  # a Flatten is pending: the tensor is still the map it would flatten
POOLED = "pooled"  # a head's global pooling is pending: the tensor is still the map
MAP = "map"  # per-position vectors: what was a vector per image is now a vector per window

_DROPOUT_CLASSES = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "ActivityRegularization",
)
# Per-position layers that act on the last axis only; cloned for 4D input in the head.
_POSITIONWISE = (
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "Softmax",
    "Rescaling",
    "Identity",
    "BatchNormalization",
    "LayerNormalization",
    "UnitNormalization",
)
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")
# Layers that tie a body to a fixed size or to sequences; refused outright on feature maps.
_REFUSED = (
    "Reshape",
    "Permute",
    "RepeatVector",
    "RNN",
    "LSTM",
    "GRU",
    "SimpleRNN",
    "ConvLSTM2D",
    "Bidirectional",
    "TimeDistributed",
    "Embedding",
    "MultiHeadAttention",
    "Resizing",
    "CenterCrop",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Flatten",
)


_GLOBAL_NOTE = "global-pool:"  # marks a body global pooling in the notes, summarised at the end


@dataclasses.dataclass
class _T:
    """A tensor of the converted graph and its kind (plus what a pending op needs)."""

    x: Any
    kind: str
    hw: tuple[int, int] = (1, 1)  # FLAT/POOLED: the map size at the native input
    channels: int = 0  # FLAT: channels of the map being flattened
    pool: str = "avg"  # POOLED: "avg" or "max"
    source: str = ""  # FLAT/POOLED: the layer that left the op pending


# --- graph walking -------------------------------------------------------------------


def _graph_of(model: Any) -> Any:
    """The functional graph behind ``model`` (a Sequential's inner Functional)."""
    if isinstance(model, keras.Sequential):
        graph = _kc.sequential_graph(model)
        if graph is None:
            raise ConversionError(model.name, "a Sequential model without a known input shape; build it first")
        return graph
    if not _kc.has_layer_graph(model):
        raise ConversionError(
            getattr(model, "name", type(model).__name__),
            "a subclassed model: its layer graph cannot be read; "
            "only functional and Sequential models can be converted",
        )
    return model


def _is_model(op: Any) -> bool:
    return isinstance(op, keras.Model)


def _input_name(t: Any, default: str) -> str:
    op = _kc.producer(t)
    return getattr(op, "name", default) if op is not None else default


def _cls(op: Any) -> str:
    return type(op).__name__


def _is_a(op: Any, names: Sequence[str]) -> bool:
    """True if ``op`` is (a subclass of) a Keras class named in ``names``."""
    return any(c.__name__ in names and c.__module__.startswith("keras") for c in type(op).__mro__)


def _nodes_in_order(graph: Any) -> list[Any]:
    by_depth = _kc.nodes_by_depth(graph)
    return [
        n for d in sorted(by_depth, reverse=True) for n in by_depth[d] if n.operation is not None and not n.is_input
    ]


def _static_shapes(graph: Any, input_shapes: Sequence[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    """Shape of every tensor of ``graph`` at the native input size (symbolic, no compute)."""
    specs: dict[int, Any] = {}
    for t, shape in zip(graph.inputs, input_shapes):
        specs[id(t)] = keras.KerasTensor(shape, dtype=t.dtype)
    for node in _nodes_in_order(graph):
        if any(id(t) not in specs for t in node.input_tensors):
            continue
        args, kwargs = _kc.node_call_arguments(node, specs)
        out = node.operation.compute_output_spec(*args, **kwargs)
        for ref, spec in zip(node.outputs, keras.tree.flatten(out)):
            specs[id(ref)] = spec
    return {k: tuple(v.shape) for k, v in specs.items()}


def _global_pool_nodes(graph: Any) -> set[int]:
    """Global poolings whose result is merged back into a feature map (squeeze-excitation).

    Every other global pooling belongs to a head. A tensor is "free" when some
    path from the input reaches it without a global pooling; a merge of a free
    tensor with one that is not makes the poolings behind the latter global context.
    """
    free = {id(t): True for t in graph.inputs}
    pools: dict[int, frozenset[int]] = {id(t): frozenset() for t in graph.inputs}
    global_ids: set[int] = set()
    for node in _nodes_in_order(graph):
        ins = [t for t in node.input_tensors if id(t) in free]
        fin = [free[id(t)] for t in ins]
        pin = frozenset().union(*(pools[id(t)] for t in ins)) if ins else frozenset()
        if _is_a(node.operation, ("GlobalAveragePooling2D", "GlobalMaxPooling2D")):
            out_free, out_pools = False, pin | {id(node)}
        else:
            out_free, out_pools = any(fin), pin
            if len(ins) > 1 and any(fin):
                for t, f in zip(ins, fin):
                    if not f:
                        global_ids.update(pools[id(t)])
        for o in node.outputs:
            free[id(o)] = out_free
            pools[id(o)] = out_pools
    return global_ids


def _call(node: Any, op: Any, ins: list[_T]) -> Any:
    """Call ``op`` with the node's original arguments, the new tensors filled in."""
    mapping = {id(ref): t.x for ref, t in zip(node.input_tensors, ins)}
    args, kwargs = _kc.node_call_arguments(node, mapping)
    return op(*args, **kwargs)
