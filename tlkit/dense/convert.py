"""Net surgery: turn a classifier into a fully convolutional network.

Any fully connected layer is a convolution. A network trained on 224x224 crops
can therefore slide over a larger image in one forward pass and return a map of
class scores, sharing the computation that separate crops would repeat:

* ``Flatten`` + ``Dense`` on an HxWxC map becomes an HxW VALID convolution whose
  kernel is the Dense kernel reshaped ``(H*W*C, K) -> (H, W, C, K)`` (Keras
  flattens channels-last, row-major, so the reshape is exact); it runs as one
  matrix product over gathered windows (:class:`PatchConv2D`), the product
  the Dense ran, with one row per position;
* every following ``Dense`` becomes a 1x1 convolution;
* a softmax ``Dense`` becomes a linear convolution followed by
  ``Softmax(axis=-1)``: the same softmax, over the channel axis at each position;
* ``GlobalAveragePooling2D`` + ``Dense`` (ResNet, Inception, EfficientNet)
  becomes a 1x1 convolution followed by average pooling with the training-time
  window (the feature-map size at the native input) and stride 1: mean and a
  linear map commute, so this is the same linear map at every window. When the
  Dense has a non-linear activation (a hidden head layer) or the pooling is a
  max, the pooling goes first instead, which is exact in every case;
* dropout (any kind) goes: it is the identity at inference.

Body layers are reused, not copied (the converted model shares their weights),
on a new input of variable spatial size; nested sub-models (a finetuned model's
``base``) are rebuilt the same way and called with their original arguments
(``training=False`` stays). Anything that cannot be converted raises
:class:`ConversionError` naming the layer.

Global pooling *inside* the body (squeeze-and-excitation in keras.applications
EfficientNet B0-B7) is kept: on a larger image it pools the whole image, so the
dense map is then no longer equal to crops; :attr:`Conversion.notes` says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras

from tlkit import _keras_compat as _kc
from tlkit.dense.graph import (
    _DROPOUT_CLASSES,
    _GLOBAL_NOTE,
    _REFUSED,
    _T,
    FLAT,
    GLOBAL,
    MAP,
    POOLED,
    SPATIAL,
    _call,
    _cls,
    _global_pool_nodes,
    _graph_of,
    _input_name,
    _is_a,
    _is_model,
    _nodes_in_order,
    _static_shapes,
)
from tlkit.dense.head_ops import (  # noqa: F401  (PatchConv2D re-exported: registered, saved models name it)
    PatchConv2D,
    _activation_name,
    _flat_dense,
    _map_op,
    _materialize,
    _pooled_op,
)
from tlkit.errors import ConversionError


@dataclasses.dataclass
class Conversion:
    """A fully convolutional model and what the conversion did.

    ``native_size`` is the input size the original was built for (the crop each
    output position stands for); ``stride`` is the step between output
    positions in input pixels; ``output_activation`` is ``"softmax"`` when each
    position already holds class probabilities, ``"linear"`` for logits.
    """

    model: Any
    native_size: tuple[int, int]
    stride: int
    channels: int
    num_outputs: int
    output_activation: str
    converted: list[str]
    notes: list[str]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the score map for an input of ``height`` x ``width`` (no forward pass)."""
        shape = self.model.compute_output_shape((1, int(height), int(width), self.channels))
        if isinstance(shape, list):
            shape = shape[0]
        return int(shape[1]), int(shape[2])


def to_fully_convolutional(model: Any, *, input_size: tuple[int, int] | None = None) -> Any:
    """The fully convolutional form of ``model``: a ``keras.Model`` on inputs ``(None, None, C)``.

    See :func:`convert` for what is converted; ``input_size`` is needed only when
    ``model`` was built with a variable input size (it is the training size).
    """
    return convert(model, input_size=input_size).model


def convert(model: Any, *, input_size: tuple[int, int] | None = None) -> Conversion:
    """Convert ``model`` (functional or Sequential, nested sub-models allowed); see the module doc."""
    graph = _graph_of(model)
    if len(graph.inputs) != 1 or len(graph.inputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in graph.inputs]
        raise ConversionError(model.name, f"needs exactly one image input (N, H, W, C); has {shapes}")
    in_shape = tuple(graph.inputs[0].shape)
    channels = in_shape[3]
    if channels is None:
        raise ConversionError(model.name, "the input's channel count is not fixed")
    if input_size is not None:
        native = (int(input_size[0]), int(input_size[1]))
    elif in_shape[1] is not None and in_shape[2] is not None:
        native = (int(in_shape[1]), int(in_shape[2]))
    else:
        raise ConversionError(
            model.name, "the model takes a variable input size; pass input_size=(H, W), the size it was trained at"
        )
    log: list[str] = []
    raw_notes: list[str] = []
    inp = keras.Input(
        shape=(None, None, channels), dtype=graph.inputs[0].dtype, name=_input_name(graph.inputs[0], "image")
    )
    outs = _convert_graph(graph, [_T(inp, SPATIAL)], [(None, *native, channels)], log, raw_notes)
    tensors = [_finish(t, log) for t in outs]
    pools = [n[len(_GLOBAL_NOTE) :] for n in raw_notes if n.startswith(_GLOBAL_NOTE)]
    notes = [n for n in raw_notes if not n.startswith(_GLOBAL_NOTE)]
    if pools:
        notes.append(
            f"{len(pools)} global pooling(s) inside the body ({pools[0]}, ...: squeeze-excitation) "
            "pool the whole image, so positions of the dense map are not independent crops"
        )
    fcn = keras.Model(inp, tensors if len(tensors) > 1 else tensors[0], name=f"{model.name}_fcn")
    conv = Conversion(
        model=fcn,
        native_size=native,
        stride=0,
        channels=int(channels),
        num_outputs=len(tensors),
        output_activation=_output_activation(tensors[0]),
        converted=log,
        notes=notes,
    )
    conv.stride = _probe_stride(conv)
    return conv


# --- converting the graph ------------------------------------------------------------


def _convert_graph(
    graph: Any, inputs: list[_T], input_shapes: Sequence[tuple[Any, ...]], log: list[str], notes: list[str]
) -> list[_T]:
    """Run ``graph`` on the new ``inputs``, converting node by node; returns its outputs."""
    shapes = _static_shapes(graph, input_shapes)
    global_pools = _global_pool_nodes(graph)
    values: dict[int, _T] = {id(ref): t for ref, t in zip(graph.inputs, inputs)}
    for node in _nodes_in_order(graph):
        if any(id(t) not in values for t in node.input_tensors):
            continue
        ins = [values[id(t)] for t in node.input_tensors]
        in_shapes = [shapes[id(t)] for t in node.input_tensors]
        out_shapes = [shapes[id(t)] for t in node.outputs]
        outs = _convert_node(node, ins, in_shapes, out_shapes, id(node) in global_pools, log, notes)
        for ref, t in zip(node.outputs, outs):
            values[id(ref)] = t
    return [values[id(t)] for t in graph.outputs]


def _convert_node(
    node: Any,
    ins: list[_T],
    in_shapes: list[tuple[Any, ...]],
    out_shapes: list[tuple[Any, ...]],
    is_global_pool: bool,
    log: list[str],
    notes: list[str],
) -> list[_T]:
    op = node.operation
    name = getattr(op, "name", _cls(op))
    kinds = {t.kind for t in ins}

    if _is_a(op, _DROPOUT_CLASSES) and len(ins) == 1:
        return [dataclasses.replace(ins[0])]  # the identity at inference: "dropout goes"
    if _is_model(op):
        return _convert_nested(node, op, ins, in_shapes, log, notes)

    if kinds <= {SPATIAL, GLOBAL}:
        return [_convert_body_op(node, op, name, ins, in_shapes, out_shapes, is_global_pool, notes)]
    if kinds == {FLAT}:
        t = ins[0]
        if _is_a(op, ("Dense",)) and len(ins) == 1:
            return [_flat_dense(op, t, log)]
        raise ConversionError(
            t.source,
            f"Flatten is followed by {name!r} ({_cls(op)}), not by a Dense "
            "layer; only Flatten + Dense has a convolutional equivalent",
        )
    if FLAT in kinds:
        src = next(t.source for t in ins if t.kind == FLAT)
        raise ConversionError(
            src,
            f"the flattened output feeds {name!r} ({_cls(op)}) together with "
            "other tensors; only Flatten + Dense can be converted",
        )
    if SPATIAL in kinds:
        raise ConversionError(name, f"{_cls(op)} mixes a feature map with a head's per-image vector")
    if kinds == {POOLED} and len(ins) == 1:
        converted = _pooled_op(op, name, ins[0], in_shapes[0], out_shapes[0], log)
        if converted is not None:
            return [converted]
    ins = [_materialize(t, log) if t.kind == POOLED else t for t in ins]
    if GLOBAL in kinds:
        raise ConversionError(name, f"{_cls(op)} mixes whole-image context with a head's vector")
    return [_map_op(node, op, name, ins, in_shapes, out_shapes, log)]


def _convert_body_op(
    node: Any,
    op: Any,
    name: str,
    ins: list[_T],
    in_shapes: list[tuple[Any, ...]],
    out_shapes: list[tuple[Any, ...]],
    is_global_pool: bool,
    notes: list[str],
) -> _T:
    """A layer on feature maps: reused as is, except for the head's entry points."""
    kinds = {t.kind for t in ins}
    if kinds == {GLOBAL}:
        # Whole-image context (squeeze-excitation branch): any layer, as it was.
        return _T(_call(node, op, ins), GLOBAL)
    if _is_a(op, ("GlobalAveragePooling2D", "GlobalMaxPooling2D")):
        if is_global_pool:
            notes.append(f"{_GLOBAL_NOTE}{name}")
            return _T(_call(node, op, ins), GLOBAL)
        shape = in_shapes[0]
        _check_channels_last(op, name)
        if shape[1] is None or shape[2] is None:
            raise ConversionError(name, "the feature map's size at the native input is unknown")
        return _T(
            ins[0].x,
            POOLED,
            hw=(int(shape[1]), int(shape[2])),
            pool="max" if _is_a(op, ("GlobalMaxPooling2D",)) else "avg",
            source=name,
        )
    if _is_a(op, ("Flatten",)):
        shape = in_shapes[0]
        if len(shape) != 4:
            raise ConversionError(name, f"Flatten of a tensor of shape {shape}; expected a feature map")
        _check_channels_last(op, name)
        if None in shape[1:]:
            raise ConversionError(name, "the feature map's size at the native input is unknown")
        return _T(ins[0].x, FLAT, hw=(int(shape[1]), int(shape[2])), channels=int(shape[3]), source=name)
    if _is_a(op, _REFUSED):
        raise ConversionError(
            name, f"{_cls(op)} on a feature map ties the network to a fixed input size or to sequences"
        )
    try:
        out = _call(node, op, ins)
    except Exception as exc:  # noqa: BLE001  (any failure means: not size-agnostic)
        raise ConversionError(name, f"{_cls(op)} fails on a variable-size input: {exc}") from None
    outs = keras.tree.flatten(out)
    if len(outs) != 1:
        raise ConversionError(name, f"{_cls(op)} has {len(outs)} outputs inside the body")
    shape = tuple(outs[0].shape)
    if len(shape) != 4 or shape[1] is not None or shape[2] is not None:
        raise ConversionError(
            name, f"{_cls(op)} turns a variable-size feature map into shape {shape}, which fixes the input size"
        )
    return _T(outs[0], SPATIAL)


def _check_channels_last(op: Any, name: str) -> None:
    fmt = getattr(op, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise ConversionError(name, f"data_format={fmt!r}; only channels_last is supported")


def _convert_nested(
    node: Any, op: Any, ins: list[_T], in_shapes: list[tuple[Any, ...]], log: list[str], notes: list[str]
) -> list[_T]:
    """A nested model: rebuilt on variable-size inputs and called as before, or inlined in a head."""
    graph = _graph_of(op)
    if all(t.kind == SPATIAL for t in ins):
        new_inputs = [
            _T(
                keras.Input(shape=(None, None, *shape[3:]), dtype=ref.dtype, name=_input_name(ref, f"{op.name}_input")),
                SPATIAL,
            )
            for ref, shape in zip(graph.inputs, in_shapes)
        ]
        outs = _convert_graph(graph, new_inputs, in_shapes, log, notes)
        finished = [_finish(t, log) for t in outs]
        sub = keras.Model(
            [t.x for t in new_inputs] if len(new_inputs) > 1 else new_inputs[0].x,
            finished if len(finished) > 1 else finished[0],
            name=op.name,
        )
        # Same arguments as the original call, so `training=False` on a finetuned base stays.
        result = keras.tree.flatten(_call(node, sub, ins))
        return [_T(x, SPATIAL if t.kind in (SPATIAL, GLOBAL) else MAP) for x, t in zip(result, outs)]
    # A head given as a sub-model (e.g. a Sequential of Dense layers): inline its layers.
    return _convert_graph(graph, [dataclasses.replace(t) for t in ins], in_shapes, log, notes)


def _finish(t: _T, log: list[str]) -> Any:
    """A graph output: pending pooling applied; a pending Flatten is an error."""
    if t.kind == FLAT:
        raise ConversionError(
            t.source, "Flatten is not followed by a Dense layer; its output has no convolutional equivalent"
        )
    if t.kind == POOLED:
        t = _materialize(t, log)
    return t.x


# --- facts about the converted model ------------------------------------------------------


def _output_activation(x: Any) -> str:
    op = _kc.producer(x)
    # Look through nested models and window pooling (pooled logits are still logits).
    while op is not None and (_is_model(op) or _is_a(op, ("AveragePooling2D", "MaxPooling2D"))):
        ref = op.outputs[0] if _is_model(op) else _kc.inbound_nodes(op)[0].input_tensors[0]
        op = _kc.producer(ref)
    if op is None:
        return "unknown"
    if _is_a(op, ("Softmax",)):
        return "softmax"
    act = _activation_name(op)
    if _is_a(op, ("Activation", "Conv2D", "Dense")):
        return act
    return "unknown"


def _probe_stride(conv: Conversion) -> int:
    """Total stride in input pixels, from the map sizes at two input sizes (no compute).

    Adding M pixels to the input adds M/S positions for valid and same padding
    alike, provided S divides M; M = 2^6 * 3^2 * 5 * 7 covers every usual stride.
    """
    m = 20160
    h, w = conv.native_size
    try:
        a = conv.output_size(h, w)[0]
        b = conv.output_size(h + m, w)[0]
    except Exception:  # noqa: BLE001  (an output without spatial axes)
        return 0
    if b == a:
        return 0
    stride = m / (b - a)
    return int(stride) if stride == int(stride) else 0
