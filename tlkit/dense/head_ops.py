"""The classifier head as convolutions: Dense -> Conv2D (Flatten + Dense as one window matmul), pending
global poolings as stride-1 window poolings, per-position layers cloned for maps.

Used by :mod:`tlkit.dense.convert`; :class:`PatchConv2D` is a registered Keras object
(``tlkit>PatchConv2D``) that converted models saved to ``.keras`` files refer to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from tlkit.dense.graph import _MERGES, _POSITIONWISE, _T, MAP, _call, _cls, _is_a
from tlkit.errors import ConversionError


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
        if (
            (kh, kw) == (1, 1)
            or self.padding != "valid"
            or tuple(self.strides) != (1, 1)
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or self.data_format != "channels_last"
        ):
            return super().call(inputs)

        def end(i: int, k: int) -> int | None:  # slice end leaving k-1-i trailing rows
            return None if i == k - 1 else i - (k - 1)

        windows = [inputs[:, i : end(i, kh), j : end(j, kw), :] for i in range(kh) for j in range(kw)]
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


def _new_conv(dense: Any, kernel_hw: tuple[int, int], in_channels: int, activation: str | None, name: str) -> Any:
    """A Conv2D holding ``dense``'s weights, kernel reshaped to ``(h, w, in_channels, units)``."""
    if getattr(dense, "quantization_mode", None):
        raise ConversionError(dense.name, f"a quantized Dense ({dense.quantization_mode}) cannot be reshaped")
    units = int(dense.units)
    # Zeros, not random init: the kernel is overwritten, and VGG's fc6 has 102M weights.
    cls = PatchConv2D if kernel_hw != (1, 1) else keras.layers.Conv2D
    conv = cls(
        units,
        kernel_hw,
        padding="valid",
        activation=activation,
        use_bias=dense.use_bias,
        kernel_initializer="zeros",
        dtype=dense.dtype_policy,
        name=name,
    )
    conv.build((None, None, None, in_channels))
    kernel = dense.kernel  # with LoRA enabled this is the merged kernel
    if tuple(kernel.shape) != (kernel_hw[0] * kernel_hw[1] * in_channels, units):
        raise ConversionError(
            dense.name,
            f"kernel {tuple(kernel.shape)} does not match a {kernel_hw[0]}x{kernel_hw[1]}x{in_channels} input",
        )
    # Keras flattens channels-last row-major, so (H*W*C, K) -> (H, W, C, K) is exact.
    conv.kernel.assign(keras.ops.reshape(kernel, (*kernel_hw, in_channels, units)))
    if dense.use_bias:
        conv.bias.assign(dense.bias)
    return conv


def _dense_as_conv(
    dense: Any, x: Any, kernel_hw: tuple[int, int], in_channels: int, pool: _T | None, log: list[str], what: str
) -> _T:
    """Apply ``dense`` as a convolution to the map ``x``; ``pool`` a pending global pooling."""
    act = _activation_name(dense)
    if pool is not None and (pool.pool == "max" or act not in ("linear", "softmax")):
        # A max, or a non-linearity, does not commute with the pooling: pool first.
        x = _pool_layer(pool, pool.source)(x)
        log.append(
            f"{pool.source}: global {pool.pool} pooling -> {pool.hw[0]}x{pool.hw[1]} "
            f"{pool.pool} pooling, stride 1 (before {dense.name}: "
            + ("a max does not commute with it)" if pool.pool == "max" else "it is non-linear)")
        )
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
    return _dense_as_conv(
        op, t.x, t.hw, t.channels, None, log, f"Flatten ({t.source}) + Dense on {t.hw[0]}x{t.hw[1]}x{t.channels}"
    )


def _pooled_op(
    op: Any, name: str, t: _T, in_shape: tuple[Any, ...], out_shape: tuple[Any, ...], log: list[str]
) -> _T | None:
    """Layers that can take a pending global pooling; None: materialize it first."""
    channels = int(in_shape[-1])
    if _is_a(op, ("Dense",)):
        return _dense_as_conv(op, t.x, (1, 1), channels, t, log, f"Dense after {t.source}")
    if _is_a(op, ("Flatten",)) or (_is_a(op, ("Reshape",)) and _is_vector_shape(out_shape, channels)):
        return dataclasses.replace(t)  # keepdims or not, the map form is the same
    if (
        _is_a(op, ("Conv2D",))
        and not _is_a(op, ("DepthwiseConv2D", "SeparableConv2D"))
        and tuple(op.kernel_size) == (1, 1)
        and op.groups == 1
    ):
        # A 1x1 conv on a (1, 1, C) pooled map (keepdims heads) is a Dense.
        act = _activation_name(op)
        if t.pool == "avg" and act in ("linear", "softmax"):
            x = _pool_layer(t, f"{name}_{t.source}")(op(t.x))
            log.append(f"{name}: 1x1 Conv2D kept + {t.hw[0]}x{t.hw[1]} average pooling, stride 1 (after {t.source})")
            return _T(x, MAP)
    return None


def _is_vector_shape(shape: tuple[Any, ...], channels: int) -> bool:
    """A per-image vector shape: (N, C) or (N, 1, 1, C)."""
    return shape[-1] == channels and all(d == 1 for d in shape[1:-1])


def _map_op(
    node: Any,
    op: Any,
    name: str,
    ins: list[_T],
    in_shapes: list[tuple[Any, ...]],
    out_shapes: list[tuple[Any, ...]],
    log: list[str],
) -> _T:
    """A head layer applied at every position of the map."""
    if _is_a(op, ("Dense",)):
        return _dense_as_conv(op, ins[0].x, (1, 1), int(in_shapes[0][-1]), None, log, "Dense")
    if (
        _is_a(op, ("Flatten", "Reshape"))
        and _is_vector_shape(in_shapes[0], int(in_shapes[0][-1]))
        and _is_vector_shape(out_shapes[0], int(in_shapes[0][-1]))
    ):
        return dataclasses.replace(ins[0])
    if (
        _is_a(op, ("Conv2D",))
        and not _is_a(op, ("DepthwiseConv2D", "SeparableConv2D"))
        and tuple(op.kernel_size) == (1, 1)
        and len(in_shapes[0]) == 4
    ):
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
