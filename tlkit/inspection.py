"""Per-layer accounting: shapes, activations, parameters, receptive field, multiply-adds."""

from __future__ import annotations

import math
from typing import Any

from tlkit import _keras_compat as _kc
from tlkit.errors import ConfigError
from tlkit.seed_notes import SEED_NOTES, SeedNote, alexnet_conv1_figures, seed_notes  # noqa: F401  (re-exported)


def conv_output_size(W: int, F: int, S: int, P: int, D: int = 1) -> int:
    """Spatial output size of a convolution or pooling: (W - D(F-1) - 1 + 2P)/S + 1.

    With dilation D=1 this is the familiar (W - F + 2P)/S + 1. A result that is
    not an integer means the hyperparameters do not tile the input; that is an
    error (W=10, F=3, S=2, P=0 gives 4.5).
    """
    for name, v in (("W", W), ("F", F), ("S", S), ("D", D)):
        if int(v) != v or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if P < 0:
        raise ConfigError(f"P must be >= 0, got {P!r}")
    span = W + 2 * P - D * (F - 1) - 1
    if span < 0:
        raise ConfigError(f"the filter (F={F}, D={D}) is larger than the padded input (W={W}, P={P})")
    out = span / S + 1
    if out != math.floor(out):
        raise ConfigError(
            f"(W - F + 2P)/S + 1 = ({W} - {D * (F - 1) + 1} + 2*{P})/{S} + 1 = {out:g} is not an "
            f"integer: these hyperparameters do not tile the input; change the padding or stride"
        )
    return int(out)


def _moving_stat_ids(model: Any) -> set[int]:
    """Variables that hold data statistics, not learned parameters: BatchNorm moving
    mean/variance and a Normalization layer's mean/variance/count."""
    import keras

    ids: set[int] = set()
    for layer in _kc.all_sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            ids.update(id(v) for v in (layer.moving_mean, layer.moving_variance))
        elif isinstance(layer, keras.layers.Normalization):
            ids.update(id(v) for v in layer.weights)
    return ids


def parameter_counts(model: Any) -> dict[str, int]:
    """``paper``: weights + biases + BN scale/offset (as papers and torchvision count);
    ``keras``: ``model.count_params()``, which also counts BN moving statistics (and
    the input Normalization statistics of keras.applications EfficientNet)."""
    skip = _moving_stat_ids(model)
    paper = sum(int(math.prod(v.shape)) for v in model.weights if id(v) not in skip)
    return {"paper": paper, "keras": int(model.count_params())}


# --- per-layer table -------------------------------------------------------------


_BIAS_NAMES = ("bias", "beta")


def _shape_list(x: Any) -> list[list[int | None]]:
    shapes = x if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple)) else [x]
    return [list(s) for s in shapes]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def own_node(model: Any, layer: Any) -> Any:
    """The node where ``layer`` is called inside ``model``'s graph (a layer reused in
    several models has one inbound node per call); None if ``model`` never calls it."""
    keys = _kc.graph_node_keys(model)
    for i, node in enumerate(_kc.inbound_nodes(layer)):
        if _kc.node_key(layer, i) in keys:
            return node
    return None


def _layer_geometry(layer: Any, in_shape: list[int | None]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(kernel, stride) in input pixels along H and W for spatial layers; None = pass-through."""
    import keras

    L = keras.layers
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose)):
        k, s, d = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
        return ((d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), s)
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        return (_pair(layer.pool_size), _pair(layer.strides))
    return None


def _is_global(layer: Any, in_shape: list[int | None]) -> bool:
    import keras

    L = keras.layers
    return isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Flatten)) and len(in_shape) == 4


# Layers whose output is a view of their input (no new memory): shown, not added to totals.
_VIEW_TYPES = ("Flatten", "Reshape", "Dropout", "SpatialDropout2D")


def _mult_adds(layer: Any, in_shape: list[int | None], out_shape: list[int | None]) -> int:
    import keras

    L = keras.layers
    out_sp = math.prod(int(v) for v in out_shape[1:-1]) if len(out_shape) > 2 else 1
    if isinstance(layer, L.SeparableConv2D):
        kh, kw = _pair(layer.kernel_size)
        c_in = int(in_shape[-1])
        mid = c_in * layer.depth_multiplier
        return out_sp * (mid * kh * kw + mid * int(out_shape[-1]))
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw = _pair(layer.kernel_size)
        return out_sp * int(out_shape[-1]) * kh * kw
    if isinstance(layer, L.Conv2D):
        kh, kw = _pair(layer.kernel_size)
        return out_sp * int(out_shape[-1]) * kh * kw * int(in_shape[-1]) // layer.groups
    if isinstance(layer, L.Dense):
        rows = math.prod(int(v) for v in in_shape[1:-1]) if len(in_shape) > 2 else 1
        return rows * int(in_shape[-1]) * layer.units
    return 0


def _weights_biases(layer: Any, skip: set[int]) -> tuple[int, int]:
    weights = biases = 0
    for v in layer.weights:
        if id(v) in skip:
            continue
        n = int(math.prod(v.shape))
        if v.path.rsplit("/", 1)[-1] in _BIAS_NAMES:
            biases += n
        else:
            weights += n
    return weights, biases


def _depth_kind(layer: Any) -> tuple[bool, bool]:
    """(weighted, pooling): papers' depth counts layers with weights, "conv and fc" (BatchNorm's
    scale and offset aside); GoogLeNet's "27 with pooling" adds the pooling layers."""
    import keras

    L = keras.layers
    weighted = isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose, L.Dense))
    pooling = isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D))
    return weighted, pooling


def _fmt_rf(rf: tuple[int, int]) -> str:
    return str(rf[0]) if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}"


def layer_table(model: Any, *, name: str | None = None) -> dict[str, Any]:
    """Per-layer accounting of a functional Keras model.

    Each row: layer, type, output shape, activations (values per image) and their
    float32 bytes (views such as Flatten and Dropout are shown but not added to the
    totals, since they allocate nothing new), weights, biases, receptive field (input pixels one output value
    sees; merges take the largest of their inputs) and multiply-adds per image.
    Totals follow: parameters (paper and Keras counts), activations forward and
    x2 for the backward pass, multiply-adds.
    """
    skip = _moving_stat_ids(model)
    geo: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}  # tensor id -> (rf, jump)
    rows: list[dict[str, Any]] = []
    depth: dict[int, tuple[int, int]] = {}  # tensor id -> (weighted layers, with pooling) on the longest path
    first_in = model.inputs[0].shape
    image_hw = (int(first_in[1] or 1), int(first_in[2] or 1)) if len(first_in) == 4 else (1, 1)
    for layer in model.layers:
        node = own_node(model, layer) or _kc.inbound_nodes(layer)[0]
        ins = _kc.node_input_tensors(node)
        outs = node.outputs
        if ins:
            rf = tuple(max(geo.get(id(t), ((1, 1), (1, 1)))[0][i] for t in ins) for i in range(2))
            jump = tuple(max(geo.get(id(t), ((1, 1), (1, 1)))[1][i] for t in ins) for i in range(2))
        else:
            rf, jump = (1, 1), (1, 1)
        in_shape = list(ins[0].shape) if ins else list(outs[0].shape)
        g = _layer_geometry(layer, in_shape)
        if _is_global(layer, in_shape):
            # A global layer sees every position: at least the whole image.
            rf = (max(rf[0], image_hw[0]), max(rf[1], image_hw[1]))
        elif g is not None:
            (kh, kw), (sh, sw) = g
            rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
            jump = (jump[0] * sh, jump[1] * sw)
        d = [max((depth.get(id(t), (0, 0))[i] for t in ins), default=0) for i in range(2)]
        weighted, pooling = _depth_kind(layer)
        d = (d[0] + weighted, d[1] + (weighted or pooling))
        for t in outs:
            geo[id(t)] = (rf, jump)  # type: ignore[assignment]
            depth[id(t)] = d
        out_shapes = [list(t.shape) for t in outs]
        activations = sum(math.prod(int(v) for v in s[1:]) for s in out_shapes)
        w, b = _weights_biases(layer, skip)
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": out_shapes[0][1:] if len(out_shapes) == 1 else [s[1:] for s in out_shapes],
                "activations": activations,
                "activation_bytes": 4 * activations,
                "weights": w,
                "biases": b,
                "params": w + b,
                "receptive_field": list(rf),
                "stride": list(jump),
                "mult_adds": _mult_adds(layer, in_shape, out_shapes[0]) if ins else 0,
                "view": type(layer).__name__ in _VIEW_TYPES,
            }
        )
    counts = parameter_counts(model)
    act = sum(r["activations"] for r in rows if not r["view"])
    totals = {
        "params": counts["paper"],
        "params_keras": counts["keras"],
        "params_note": "params = weights + biases + BatchNorm scale/offset, as papers count; "
        "params_keras = model.count_params(), which adds BatchNorm moving statistics",
        "activations": act,
        "activation_bytes": 4 * act,
        "activations_forward_backward": 2 * act,
        "activation_bytes_forward_backward": 8 * act,
        "mult_adds": sum(r["mult_adds"] for r in rows),
    }
    totals["depth"], totals["depth_with_pooling"] = depth.get(id(model.outputs[0]), (0, 0))
    key = name or model.name
    table = {
        "model": key,
        "input_shape": list(model.input_shape[1:])
        if not isinstance(model.input_shape, list)
        else [list(s[1:]) for s in model.input_shape],
        "rows": rows,
        "totals": totals,
        "notes": [],
    }
    table["notes"] = seed_notes(key, table)
    return table


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def format_table(table: dict[str, Any]) -> str:
    """Render :func:`layer_table` output as a fixed-width text table."""
    header = ("layer", "type", "output", "activations", "memory", "weights", "biases", "RF", "mult-adds")
    lines = []
    for r in table["rows"]:
        shape = r["output_shape"]
        shape_s = "x".join(str(v) for v in shape) if shape and not isinstance(shape[0], list) else str(shape)
        lines.append(
            (
                r["layer"],
                r["type"],
                shape_s,
                f"{r['activations']:,}",
                _human(r["activation_bytes"]) + "B",
                f"{r['weights']:,}",
                f"{r['biases']:,}",
                _fmt_rf(tuple(r["receptive_field"])),
                _human(r["mult_adds"]),
            )
        )
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for l in lines:
        out.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(l, widths))))
    t = table["totals"]
    out += [
        "",
        (
            f"parameters:        {t['params']:,} (Keras count_params with BatchNorm moving statistics: "
            f"{t['params_keras']:,})"
        ),
        (
            f"activations/image: {t['activations']:,} forward ({_human(t['activation_bytes'])}B at float32), "
            f"x2 with backward: {t['activations_forward_backward']:,} "
            f"({_human(t['activation_bytes_forward_backward'])}B)"
        ),
        f"multiply-adds:     {t['mult_adds']:,} ({_human(t['mult_adds'])})",
        (
            f"depth:             {t['depth']} weighted layers (conv and fc) on the longest path, "
            f"{t['depth_with_pooling']} counting pooling layers"
        ),
    ]
    out += [f"note: {n}" for n in table["notes"]]
    return "\n".join(out)
