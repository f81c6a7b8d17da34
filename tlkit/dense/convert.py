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

# Layer kinds along a tensor of the converted graph:
SPATIAL = "spatial"  # a feature map: slides with the input
GLOBAL = "global"  # derived from a body's global pooling (squeeze-excitation): whole-image context
FLAT = "flat"  # a Flatten is pending: the tensor is still the map it would flatten
POOLED = "pooled"  # a head's global pooling is pending: the tensor is still the map
MAP = "map"  # per-position vectors: what was a vector per image is now a vector per window

_DROPOUT_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                    "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization")
# Per-position layers that act on the last axis only; cloned for 4D input in the head.
_POSITIONWISE = ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Rescaling",
                 "Identity", "BatchNormalization", "LayerNormalization", "UnitNormalization")
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")
# Layers that tie a body to a fixed size or to sequences; refused outright on feature maps.
_REFUSED = ("Reshape", "Permute", "RepeatVector", "RNN", "LSTM", "GRU", "SimpleRNN", "ConvLSTM2D",
            "Bidirectional", "TimeDistributed", "Embedding", "MultiHeadAttention", "Resizing",
            "CenterCrop", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten")


_GLOBAL_NOTE = "global-pool:"  # marks a body global pooling in the notes, summarised at the end


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


@dataclasses.dataclass
class _T:
    """A tensor of the converted graph and its kind (plus what a pending op needs)."""

    x: Any
    kind: str
    hw: tuple[int, int] = (1, 1)  # FLAT/POOLED: the map size at the native input
    channels: int = 0  # FLAT: channels of the map being flattened
    pool: str = "avg"  # POOLED: "avg" or "max"
    source: str = ""  # FLAT/POOLED: the layer that left the op pending


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
        raise ConversionError(model.name, "the model takes a variable input size; pass input_size=(H, W), "
                                          "the size it was trained at")
    log: list[str] = []
    raw_notes: list[str] = []
    inp = keras.Input(shape=(None, None, channels), dtype=graph.inputs[0].dtype,
                      name=_input_name(graph.inputs[0], "image"))
    outs = _convert_graph(graph, [_T(inp, SPATIAL)], [(None, *native, channels)], log, raw_notes)
    tensors = [_finish(t, log) for t in outs]
    pools = [n[len(_GLOBAL_NOTE):] for n in raw_notes if n.startswith(_GLOBAL_NOTE)]
    notes = [n for n in raw_notes if not n.startswith(_GLOBAL_NOTE)]
    if pools:
        notes.append(f"{len(pools)} global pooling(s) inside the body ({pools[0]}, ...: squeeze-excitation) "
                     "pool the whole image, so positions of the dense map are not independent crops")
    fcn = keras.Model(inp, tensors if len(tensors) > 1 else tensors[0], name=f"{model.name}_fcn")
    conv = Conversion(model=fcn, native_size=native, stride=0, channels=int(channels),
                      num_outputs=len(tensors), output_activation=_output_activation(tensors[0]),
                      converted=log, notes=notes)
    conv.stride = _probe_stride(conv)
    return conv


# --- graph walking -------------------------------------------------------------------


def _graph_of(model: Any) -> Any:
    """The functional graph behind ``model`` (a Sequential's inner Functional)."""
    if isinstance(model, keras.Sequential):
        graph = _kc.sequential_graph(model)
        if graph is None:
            raise ConversionError(model.name, "a Sequential model without a known input shape; build it first")
        return graph
    if not _kc.has_layer_graph(model):
        raise ConversionError(getattr(model, "name", type(model).__name__),
                              "a subclassed model: its layer graph cannot be read; "
                              "only functional and Sequential models can be converted")
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
    return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]
            if n.operation is not None and not n.is_input]


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


def _convert_graph(graph: Any, inputs: list[_T], input_shapes: Sequence[tuple[Any, ...]],
                   log: list[str], notes: list[str]) -> list[_T]:
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


def _call(node: Any, op: Any, ins: list[_T]) -> Any:
    """Call ``op`` with the node's original arguments, the new tensors filled in."""
    mapping = {id(ref): t.x for ref, t in zip(node.input_tensors, ins)}
    args, kwargs = _kc.node_call_arguments(node, mapping)
    return op(*args, **kwargs)


def _convert_node(node: Any, ins: list[_T], in_shapes: list[tuple[Any, ...]],
                  out_shapes: list[tuple[Any, ...]], is_global_pool: bool,
                  log: list[str], notes: list[str]) -> list[_T]:
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
        raise ConversionError(t.source, f"Flatten is followed by {name!r} ({_cls(op)}), not by a Dense "
                                        "layer; only Flatten + Dense has a convolutional equivalent")
    if FLAT in kinds:
        src = next(t.source for t in ins if t.kind == FLAT)
        raise ConversionError(src, f"the flattened output feeds {name!r} ({_cls(op)}) together with "
                                   "other tensors; only Flatten + Dense can be converted")
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


def _convert_body_op(node: Any, op: Any, name: str, ins: list[_T], in_shapes: list[tuple[Any, ...]],
                     out_shapes: list[tuple[Any, ...]], is_global_pool: bool, notes: list[str]) -> _T:
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
        return _T(ins[0].x, POOLED, hw=(int(shape[1]), int(shape[2])),
                  pool="max" if _is_a(op, ("GlobalMaxPooling2D",)) else "avg", source=name)
    if _is_a(op, ("Flatten",)):
        shape = in_shapes[0]
        if len(shape) != 4:
            raise ConversionError(name, f"Flatten of a tensor of shape {shape}; expected a feature map")
        _check_channels_last(op, name)
        if None in shape[1:]:
            raise ConversionError(name, "the feature map's size at the native input is unknown")
        return _T(ins[0].x, FLAT, hw=(int(shape[1]), int(shape[2])), channels=int(shape[3]), source=name)
    if _is_a(op, _REFUSED):
        raise ConversionError(name, f"{_cls(op)} on a feature map ties the network to a fixed input "
                                    "size or to sequences")
    try:
        out = _call(node, op, ins)
    except Exception as exc:  # noqa: BLE001  (any failure means: not size-agnostic)
        raise ConversionError(name, f"{_cls(op)} fails on a variable-size input: {exc}") from None
    outs = keras.tree.flatten(out)
    if len(outs) != 1:
        raise ConversionError(name, f"{_cls(op)} has {len(outs)} outputs inside the body")
    shape = tuple(outs[0].shape)
    if len(shape) != 4 or shape[1] is not None or shape[2] is not None:
        raise ConversionError(name, f"{_cls(op)} turns a variable-size feature map into shape {shape}, "
                                    "which fixes the input size")
    return _T(outs[0], SPATIAL)


def _check_channels_last(op: Any, name: str) -> None:
    fmt = getattr(op, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise ConversionError(name, f"data_format={fmt!r}; only channels_last is supported")


def _convert_nested(node: Any, op: Any, ins: list[_T], in_shapes: list[tuple[Any, ...]],
                    log: list[str], notes: list[str]) -> list[_T]:
    """A nested model: rebuilt on variable-size inputs and called as before, or inlined in a head."""
    graph = _graph_of(op)
    if all(t.kind == SPATIAL for t in ins):
        new_inputs = [_T(keras.Input(shape=(None, None, *shape[3:]), dtype=ref.dtype,
                                     name=_input_name(ref, f"{op.name}_input")), SPATIAL)
                      for ref, shape in zip(graph.inputs, in_shapes)]
        outs = _convert_graph(graph, new_inputs, in_shapes, log, notes)
        finished = [_finish(t, log) for t in outs]
        sub = keras.Model([t.x for t in new_inputs] if len(new_inputs) > 1 else new_inputs[0].x,
                          finished if len(finished) > 1 else finished[0], name=op.name)
        # Same arguments as the original call, so `training=False` on a finetuned base stays.
        result = keras.tree.flatten(_call(node, sub, ins))
        return [_T(x, SPATIAL if t.kind in (SPATIAL, GLOBAL) else MAP) for x, t in zip(result, outs)]
    # A head given as a sub-model (e.g. a Sequential of Dense layers): inline its layers.
    return _convert_graph(graph, [dataclasses.replace(t) for t in ins], in_shapes, log, notes)


def _finish(t: _T, log: list[str]) -> Any:
    """A graph output: pending pooling applied; a pending Flatten is an error."""
    if t.kind == FLAT:
        raise ConversionError(t.source, "Flatten is not followed by a Dense layer; its output has no "
                                        "convolutional equivalent")
    if t.kind == POOLED:
        t = _materialize(t, log)
    return t.x


# --- the head ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tlkit")
class PatchConv2D(keras.layers.Conv2D):
    """A VALID, stride-1 ``Conv2D`` computed as one matrix product over gathered windows.

    The same convolution (same kernel, same config): the input's ``kh x kw``
    windows are gathered in the kernel's (row, column, channel) order and
    multiplied by the kernel reshaped to ``(kh*kw*C, K)``, which is exactly the
    matrix product the original Flatten + Dense ran, with one row per position.
    Why: the generic convolution kernels are tuned for small kernels on many
    positions; VGG16's fc6 (7x7x512 -> 4096) is the opposite case, and one large
    matrix product suits it better (the dense-vs-crops ratio in
    ``benchmarks/bench_dense.py`` is measured with this layer).
    """

    def call(self, inputs: Any) -> Any:
        kh, kw = self.kernel_size
        if (kh, kw) == (1, 1) or self.padding != "valid" or tuple(self.strides) != (1, 1) \
                or tuple(self.dilation_rate) != (1, 1) or self.groups != 1 or self.data_format != "channels_last":
            return super().call(inputs)

        def end(i: int, k: int) -> int | None:  # slice end leaving k-1-i trailing rows
            return None if i == k - 1 else i - (k - 1)

        windows = [inputs[:, i:end(i, kh), j:end(j, kw), :] for i in range(kh) for j in range(kw)]
        patches = keras.ops.concatenate(windows, axis=-1)
        y = keras.ops.matmul(patches, keras.ops.reshape(self.kernel, (-1, self.filters)))
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y



def _activation_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    if act is None or act is keras.activations.linear:
        return "linear"
    if act is keras.activations.softmax:
        return "softmax"
    return getattr(act, "__name__", "other")


def _new_conv(dense: Any, kernel_hw: tuple[int, int], in_channels: int, activation: str | None,
              name: str) -> Any:
    """A Conv2D holding ``dense``'s weights, kernel reshaped to ``(h, w, in_channels, units)``."""
    if getattr(dense, "quantization_mode", None):
        raise ConversionError(dense.name, f"a quantized Dense ({dense.quantization_mode}) cannot be reshaped")
    units = int(dense.units)
    # Zeros, not random init: the kernel is overwritten, and VGG's fc6 has 102M weights.
    cls = PatchConv2D if kernel_hw != (1, 1) else keras.layers.Conv2D
    conv = cls(units, kernel_hw, padding="valid", activation=activation,
                               use_bias=dense.use_bias, kernel_initializer="zeros",
                               dtype=dense.dtype_policy, name=name)
    conv.build((None, None, None, in_channels))
    kernel = dense.kernel  # with LoRA enabled this is the merged kernel
    if tuple(kernel.shape) != (kernel_hw[0] * kernel_hw[1] * in_channels, units):
        raise ConversionError(dense.name, f"kernel {tuple(kernel.shape)} does not match a "
                                          f"{kernel_hw[0]}x{kernel_hw[1]}x{in_channels} input")
    # Keras flattens channels-last row-major, so (H*W*C, K) -> (H, W, C, K) is exact.
    conv.kernel.assign(keras.ops.reshape(kernel, (*kernel_hw, in_channels, units)))
    if dense.use_bias:
        conv.bias.assign(dense.bias)
    return conv


def _dense_as_conv(dense: Any, x: Any, kernel_hw: tuple[int, int], in_channels: int,
                   pool: _T | None, log: list[str], what: str) -> _T:
    """Apply ``dense`` as a convolution to the map ``x``; ``pool`` a pending global pooling."""
    act = _activation_name(dense)
    if pool is not None and (pool.pool == "max" or act not in ("linear", "softmax")):
        # A max, or a non-linearity, does not commute with the pooling: pool first.
        x = _pool_layer(pool, pool.source)(x)
        log.append(f"{pool.source}: global {pool.pool} pooling -> {pool.hw[0]}x{pool.hw[1]} "
                   f"{pool.pool} pooling, stride 1 (before {dense.name}: "
                   + ("a max does not commute with it)" if pool.pool == "max" else "it is non-linear)"))
        pool = None
    linear = act in ("linear", "softmax")  # then any pending pooling can follow the conv
    conv = _new_conv(dense, kernel_hw, in_channels, None if linear else dense.activation, dense.name)
    x = conv(x)
    desc = f"{dense.name}: {what} -> Conv2D {kernel_hw[0]}x{kernel_hw[1]} valid"
    if pool is not None:
        x = _pool_layer(pool, f"{dense.name}_{pool.source}")(x)
        desc += f" + {pool.hw[0]}x{pool.hw[1]} average pooling, stride 1 (after {pool.source})"
    if act == "softmax":
        x = keras.layers.Softmax(axis=-1, dtype=dense.dtype_policy, name=f"{dense.name}_softmax")(x)
        desc += " + softmax over channels"
    log.append(desc)
    return _T(x, MAP)


def _pool_layer(pool: _T, name: str) -> Any:
    cls = keras.layers.MaxPooling2D if pool.pool == "max" else keras.layers.AveragePooling2D
    return cls(pool_size=pool.hw, strides=1, padding="valid", name=name)


def _materialize(t: _T, log: list[str]) -> _T:
    """Apply a pending global pooling as a window pooling with stride 1."""
    log.append(f"{t.source}: global {t.pool} pooling -> {t.hw[0]}x{t.hw[1]} {t.pool} pooling, stride 1")
    return _T(_pool_layer(t, t.source)(t.x), MAP)


def _flat_dense(op: Any, t: _T, log: list[str]) -> _T:
    return _dense_as_conv(op, t.x, t.hw, t.channels, None, log,
                          f"Flatten ({t.source}) + Dense on {t.hw[0]}x{t.hw[1]}x{t.channels}")


def _pooled_op(op: Any, name: str, t: _T, in_shape: tuple[Any, ...], out_shape: tuple[Any, ...],
               log: list[str]) -> _T | None:
    """Layers that can take a pending global pooling; None: materialize it first."""
    channels = int(in_shape[-1])
    if _is_a(op, ("Dense",)):
        return _dense_as_conv(op, t.x, (1, 1), channels, t, log, f"Dense after {t.source}")
    if _is_a(op, ("Flatten",)) or (_is_a(op, ("Reshape",)) and _is_vector_shape(out_shape, channels)):
        return dataclasses.replace(t)  # keepdims or not, the map form is the same
    if (_is_a(op, ("Conv2D",)) and not _is_a(op, ("DepthwiseConv2D", "SeparableConv2D"))
            and tuple(op.kernel_size) == (1, 1) and op.groups == 1):
        # A 1x1 conv on a (1, 1, C) pooled map (keepdims heads) is a Dense.
        act = _activation_name(op)
        if t.pool == "avg" and act in ("linear", "softmax"):
            x = _pool_layer(t, f"{name}_{t.source}")(op(t.x))
            log.append(f"{name}: 1x1 Conv2D kept + {t.hw[0]}x{t.hw[1]} average pooling, stride 1 "
                       f"(after {t.source})")
            return _T(x, MAP)
    return None


def _is_vector_shape(shape: tuple[Any, ...], channels: int) -> bool:
    """A per-image vector shape: (N, C) or (N, 1, 1, C)."""
    return shape[-1] == channels and all(d == 1 for d in shape[1:-1])


def _map_op(node: Any, op: Any, name: str, ins: list[_T], in_shapes: list[tuple[Any, ...]],
            out_shapes: list[tuple[Any, ...]], log: list[str]) -> _T:
    """A head layer applied at every position of the map."""
    if _is_a(op, ("Dense",)):
        return _dense_as_conv(op, ins[0].x, (1, 1), int(in_shapes[0][-1]), None, log, "Dense")
    if _is_a(op, ("Flatten", "Reshape")) and _is_vector_shape(in_shapes[0], int(in_shapes[0][-1])) \
            and _is_vector_shape(out_shapes[0], int(in_shapes[0][-1])):
        return dataclasses.replace(ins[0])
    if (_is_a(op, ("Conv2D",)) and not _is_a(op, ("DepthwiseConv2D", "SeparableConv2D"))
            and tuple(op.kernel_size) == (1, 1) and len(in_shapes[0]) == 4):
        return _T(op(ins[0].x), MAP)
    if _is_a(op, _POSITIONWISE + _MERGES):
        config = op.get_config()
        rank = len(in_shapes[0])
        if "axis" in config:
            axes = config["axis"] if isinstance(config["axis"], (list, tuple)) else [config["axis"]]
            if [a % rank for a in axes] != [rank - 1]:
                raise ConversionError(name, f"{_cls(op)} over axis {config['axis']}, not the channel axis")
            config["axis"] = -1 if not isinstance(config["axis"], (list, tuple)) else [-1]
        if _is_a(op, ("PReLU",)) and config.get("shared_axes"):
            raise ConversionError(name, "PReLU with shared axes in the head")
        # A fresh layer: the original was built for (N, C) and checks that rank.
        clone = type(op).from_config(config)
        x = _call(node, clone, ins)
        if op.weights:
            clone.set_weights(op.get_weights())
        return _T(x, MAP)
    raise ConversionError(name, f"{_cls(op)} in the classifier head has no per-position equivalent")


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
