"""Feature taps: a multi-output model that returns named layers' activations.

Works on registry models (aliases such as ``fc7``, ``pool5``, ``avg_pool``,
``penultimate``) and on finetuned models whose pretrained body is a nested
sub-model. Tapping a nested layer directly (``Model(outer.input, inner_layer.output)``)
fails in Keras with "Graph disconnected", because the inner layer's output lives in
the sub-model's own graph; here the sub-model is re-tapped on its own input and
called on the outer model's tensor that feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tlkit import _keras_compat as _kc
from tlkit.errors import ModelError
from tlkit.inspection import own_node

POOLINGS = ("avg", "max", "none")


def _spec_for(model: keras.Model, base: str | None) -> Any:
    import tlkit

    for name in (base, model.name.removesuffix("_finetune"), model.name):
        if not name:
            continue
        try:
            return tlkit.get_spec(name)
        except KeyError:
            continue
    return None


def _find_layer(model: keras.Model, name: str) -> tuple[list[keras.Model], keras.layers.Layer] | None:
    """(path of nested models from ``model`` down, layer) for a layer name, searching sub-models."""
    if name.startswith("type:"):
        cls = name.split(":", 1)[1]
        hits = [l for l in model.layers if type(l).__name__ == cls]
        if hits:
            return [model], hits[-1]
    else:
        for layer in model.layers:
            if layer.name == name:
                return [model], layer
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes"):
            found = _find_layer(layer, name)
            if found:
                return [model, *found[0]], found[1]
    return None


def resolve_tap(model: keras.Model, name: str, *, base: str | None = None) -> str:
    """The concrete layer name behind ``name`` (an alias of the model's spec, or a raw name)."""
    if _find_layer(model, name):
        return name
    spec = _spec_for(model, base)
    if spec is not None and name in spec.layers:
        target = spec.layers[name]
        if _find_layer(model, target):
            return target
    # A finetuned model's own head: its penultimate is what feeds the classifier.
    if name == "penultimate":
        for candidate in ("head_hidden", "avg_pool"):
            if any(l.name == candidate for l in model.layers):
                return candidate
    aliases = sorted(spec.layers) if spec is not None else []
    raise ModelError(
        f"no layer {name!r} in model {model.name!r}; aliases: {', '.join(aliases) or 'none'}; "
        f"or use a raw layer name (see `tlkit inspect`)"
    )


def head_tap_error(spec: Any, layers: Sequence[str], body: Any, size: tuple[int, int]) -> ModelError | None:
    """The real reason a tap is missing at a non-native input size: it is in the head, which
    exists only at the native size (a Flatten+Dense head fixes it). None if that is not why."""
    import tlkit

    full = None
    head = []
    for tap in layers:
        name = spec.resolve_layer(tap)
        if _find_layer(body, name):
            continue
        if name not in spec.layers.values():  # not a named layer of the full model: check it is one
            if full is None:
                full = tlkit.build(spec.name, weights=None, include_top=True)
            if not _find_layer(full, name):
                continue
        head.append(tap)
    if not head:
        return None
    native = "x".join(str(s) for s in spec.input_shape[:2])
    what = (
        "fully connected head, which fixes the input at "
        if spec.fixed_input
        else "classifier head, which tlkit builds only at the native input size "
    )
    # Aliases that do exist at this size (penultimate becomes the pooled top map when there is one).
    order = ["pool5", "penultimate", "top", *sorted(spec.layers)]
    convs = [
        a
        for a in dict.fromkeys(order)
        if a in spec.layers
        and _find_layer(
            body, spec.layers["top"] if a in ("avg_pool", "penultimate") and "top" in spec.layers else spec.layers[a]
        )
    ]
    other = f", or tap {' or '.join(convs[:2])} at {size[0]}x{size[1]}" if convs else ""
    names = ("layers " if len(head) > 1 else "layer ") + ", ".join(repr(t) for t in head)
    verb = "are" if len(head) > 1 else "is"
    return ModelError(
        f"{names} of {spec.name} {verb} in its {what}{native}, not at --input-size {size[0]} "
        f"{size[1]}: extract it at --input-size {native.replace('x', ' ')} (or without --input-size)"
        f"{other}"
    )


def _pool(x: Any, pooling: str, name: str) -> Any:
    if len(x.shape) == 2:
        return x
    if len(x.shape) != 4:
        return keras.layers.Flatten(name=f"{name}_flat")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(x)
    return keras.layers.Flatten(name=f"{name}_flat")(x)


def _tensor_in_graph(model: keras.Model, inputs: Any, layer_path: list[keras.Model], layer: Any) -> Any:
    """The output of ``layer`` (inside ``layer_path``) when ``model`` is applied to ``inputs``."""
    if len(layer_path) == 1:
        return keras.Model(model.inputs, layer.output)(inputs)
    sub = layer_path[1]
    # Everything of the outer model up to the sub-model, replayed on the new input: the
    # tensors that feed the sub-model's call inside the outer graph.
    node = own_node(model, sub)
    if node is None:
        raise ModelError(f"sub-model {sub.name!r} is not called inside {model.name!r}")
    tensors = _kc.node_input_tensors(node)
    feed = keras.Model(model.inputs, tensors[0] if len(tensors) == 1 else tensors)
    inner = _tensor_in_graph(sub, sub.inputs, layer_path[1:], layer)
    tapped_sub = keras.Model(sub.inputs, inner)
    return tapped_sub(feed(inputs), training=False)


def extractor(
    model: keras.Model, layers: Sequence[str], *, pooling: str = "avg", base: str | None = None
) -> keras.Model:
    """A model with one output per tap, each (batch, dim): convolutional maps are pooled
    (``avg``/``max``) or flattened (``none``); vectors pass through.

    ``layers`` are aliases (``fc6``, ``fc7``, ``pool5``, ``avg_pool``, ``penultimate``)
    or raw layer names, also of layers inside a nested base.
    """
    if pooling not in POOLINGS:
        raise ModelError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not layers:
        raise ModelError("name at least one layer to tap")
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = []
    seen: dict[str, str] = {}
    for tap in layers:
        concrete = resolve_tap(model, tap, base=base)
        if concrete in seen:  # one layer twice: the same features under two names (and clashing layer names)
            first = seen[concrete]
            same = f"{tap!r} is named twice" if first == tap else f"{first!r} and {tap!r} are the same layer"
            raise ModelError(f"layer {same} ({concrete!r} of {model.name!r}); name each layer once")
        seen[concrete] = tap
        path, layer = _find_layer(model, concrete)  # type: ignore[misc]
        y = _tensor_in_graph(model, inputs, path, layer)
        outputs.append(_pool(y, pooling, f"tap_{tap}"))
    return keras.Model(inputs, outputs, name=f"{model.name}_taps")
