"""Deconvnet and guided-backprop ReLUs, and the model copy from pixels to one layer that uses them.

A ReLU's ordinary backward pass multiplies the signal from above by the forward mask (1 where the
unit's input was positive). Zeiler & Fergus's deconvnet instead rectifies the signal and ignores
the forward mask ("unpooling, rectify and filter"); guided backpropagation (Springenberg et al.
2015) applies both: ``relu(signal) * (input > 0)``. Max pooling's gradient already routes the
signal to the position that won the forward pass (the deconvnet's "switches"), and a
convolution's gradient is the transposed convolution (the "filter" step), so only the ReLU
changes. ReLU6 is treated as a ReLU: its upper clip passes the signal (a unit saturated at 6 still
projects). Other activations (swish, sigmoid, leaky ReLU) keep their ordinary gradient; they are
listed in :attr:`Projector.plain_activations` so the caller can say so.

Backend-neutral Keras 3: the rules are ``keras.ops.custom_gradient`` functions; only the gradient
computation itself (:func:`tlkit.visualize.project.input_gradients`) is backend-specific.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from tlkit.errors import ConfigError

METHODS = ("deconvnet", "guided")


def projected_relu(x: Any, method: str, max_value: float | None = None) -> Any:
    """``relu(x)`` (clipped at ``max_value`` when given) whose gradient follows ``method``."""
    if method not in METHODS:
        raise ConfigError(f"projection method {method!r} is not one of {', '.join(METHODS)}")

    @keras.ops.custom_gradient
    def f(x):
        y = keras.ops.relu(x) if max_value is None else keras.ops.clip(x, 0.0, max_value)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the signal positionally
                (upstream,) = args
            g = keras.ops.relu(upstream)  # both rules rectify the signal from above
            if method == "guided":
                g = g * keras.ops.cast(keras.ops.greater(x, 0.0), g.dtype)  # ... and keep the forward mask
            return g

        return y, grad

    return f(x)


class ProjectedReLU(keras.layers.Layer):
    """A ReLU layer (optionally capped, as ReLU6) with the deconvnet or guided backward pass."""

    def __init__(self, method: str, max_value: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.max_value = max_value

    def call(self, x: Any) -> Any:
        return projected_relu(x, self.method, self.max_value)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class ThenProjectedReLU(keras.layers.Layer):
    """A copy of ``layer`` with a linear activation, followed by :class:`ProjectedReLU`:
    replaces a ``Conv2D(..., activation="relu")`` (or Dense, depthwise, ...) in the projection copy."""

    def __init__(self, layer: Any, method: str, max_value: float | None = None, **kwargs: Any) -> None:
        super().__init__(name=f"{layer.name}_projected", **kwargs)
        self.source = layer
        self.linear = type(layer).from_config({**layer.get_config(), "activation": "linear", "name": layer.name})
        self.method = method
        self.max_value = max_value

    def build(self, input_shape: Any) -> None:
        self.linear.build(input_shape)
        self.linear.set_weights(self.source.get_weights())
        self.built = True

    def call(self, x: Any) -> Any:
        return projected_relu(self.linear(x), self.method, self.max_value)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.linear.compute_output_shape(input_shape)


_RELUS = {"relu": None, "relu6": 6.0}


def relu_kind(layer: Any) -> tuple[str, float | None] | None:
    """How ``layer`` applies a ReLU: ``("layer", cap)`` for a ReLU/Activation layer that is one,
    ``("activation", cap)`` for a layer with ``activation="relu"``/``"relu6"``; None otherwise."""
    L = keras.layers
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope or 0) == 0 and float(layer.threshold or 0) == 0:
            return ("layer", None if layer.max_value is None else float(layer.max_value))
        return None
    act = getattr(layer, "activation", None)
    for name, cap in _RELUS.items():
        if act is getattr(keras.activations, name):
            return ("layer" if isinstance(layer, L.Activation) else "activation", cap)
    return None


def _other_nonlinearity(layer: Any) -> str | None:
    """The name of a non-ReLU activation ``layer`` applies (kept with its ordinary gradient), or None."""
    L = keras.layers
    if isinstance(layer, (L.LeakyReLU, L.PReLU, L.ELU, L.Softmax, L.ReLU)):
        return type(layer).__name__
    act = getattr(layer, "activation", None)
    if callable(act) and act is not keras.activations.linear and not isinstance(layer, keras.Model):
        return getattr(act, "__name__", str(act))
    return None


@dataclass
class Projector:
    """``model``: pixels -> the target layer's output, ReLUs following ``method`` on the way back."""

    model: Any
    method: str
    replaced: list[str] = field(default_factory=list)  # layers whose ReLU follows the rule
    plain_activations: list[str] = field(default_factory=list)  # "layer (swish)": ordinary gradient


def find_layer(model: Any, name: str) -> list[Any]:
    """The chain ``[model, nested model, ..., layer]`` that reaches the layer called ``name``
    (depth first, outer layers before nested models'); [] when there is none."""
    for layer in model.layers:
        if layer.name == name:
            return [model, layer]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            chain = find_layer(layer, name)
            if chain:
                return [model, *chain]
    return []


def layer_names(model: Any) -> list[str]:
    """Every layer name in ``model`` and its nested models (for error messages)."""
    out = []
    for layer in model.layers:
        out.append(layer.name)
        if isinstance(layer, keras.Model):
            out += layer_names(layer)
    return out


def prefix_chain(model: Any, name: str) -> list[Any]:
    """Functional models whose composition maps ``model``'s input to the output of layer ``name``:
    for each nested model on the way, the part of its parent in front of it."""
    chain = find_layer(model, name)
    if not chain:
        import difflib

        names = layer_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" It has {len(names)} layers, e.g. {names[-1]}."
        raise ConfigError(f"the model has no layer {name!r}.{hint} (`tlkit inspect NAME` lists them)")
    prefixes = []
    for parent, child in zip(chain[:-1], chain[1:]):
        if child is chain[-1]:
            out = child.output
        else:
            from tlkit import _keras_compat as _kc
            from tlkit.inspection import own_node

            node = own_node(parent, child)
            ins = _kc.node_input_tensors(node)
            if len(ins) != 1:
                raise ConfigError(f"the nested model {child.name!r} takes {len(ins)} inputs; tlkit visualize needs one")
            out = ins[0]
        if len(parent.inputs) != 1:
            raise ConfigError(f"model {parent.name!r} takes {len(parent.inputs)} inputs; tlkit visualize needs one")
        prefixes.append(keras.Model(parent.inputs, out, name=f"{parent.name}_to_{name}"))
    return prefixes


def projector(model: Any, name: str, method: str) -> Projector:
    """A new model from ``model``'s input to layer ``name``'s output (the original layers and their
    weights, shared), whose ReLUs and ReLU6s have the ``method`` backward pass."""
    if method not in METHODS:
        raise ConfigError(f"projection method {method!r} is not one of {', '.join(METHODS)}")
    result = Projector(model=None, method=method)

    def swap(layer: Any) -> Any:
        kind = relu_kind(layer)
        if kind is None:
            other = _other_nonlinearity(layer)
            if other is not None:
                result.plain_activations.append(f"{layer.name} ({other})")
            return layer  # shared: same weights, same call
        result.replaced.append(layer.name)
        where, cap = kind
        if where == "layer":
            return ProjectedReLU(method, cap, name=f"{layer.name}_projected")
        return ThenProjectedReLU(layer, method, cap)

    copies = [keras.models.clone_model(p, clone_function=swap, recursive=True) for p in prefix_chain(model, name)]
    inp = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="pixels")
    x = inp
    for c in copies:
        x = c(x)
    result.model = keras.Model(inp, x, name=f"{method}_to_{name}")
    return result
