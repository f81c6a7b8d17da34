"""Taps of a segmentation base: the feature map a decoder takes at each stride (4, 8, 16, 32).

A registered base names its taps as layer aliases in its spec (``stride8`` .. ``stride32``; the
VGGs also say ``pool3`` / ``pool4``, FCN's names): the output of the last block at that stride.
Any other base falls back to :func:`find_taps`, which reads the output shapes: the last layer (in
the graph's order) whose output is a feature map of exactly ``H/s x W/s`` is the stride-``s`` tap.
``tests/test_segment_models.py`` checks that every alias names a real layer at the stride it claims.
"""

from __future__ import annotations

from typing import Any

from tlkit.errors import ModelError

STRIDES = (2, 4, 8, 16, 32)


def tap_alias(stride: int) -> str:
    return f"stride{int(stride)}"


def inbound_names(layer_config: dict[str, Any]) -> list[str]:
    """Names of the layers whose outputs feed a layer (from a functional config's ``keras_history``)."""
    names: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            hist = obj.get("config", {}).get("keras_history") if obj.get("class_name") == "__keras_tensor__" else None
            if hist:
                names.append(hist[0])
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(layer_config.get("inbound_nodes", []))
    return names


def layer_strides(model: Any, size: tuple[int, int]) -> dict[str, int]:
    """Layer name -> stride, for every layer of ``model`` (built at ``size``) whose output is a feature map
    of exactly ``size / s`` for a power of two ``s`` (padding layers and global poolings are left out)."""
    h, w = size
    strides: dict[str, int] = {}
    for layer in model.layers:
        if type(layer).__name__ in ("ZeroPadding2D", "Cropping2D"):
            continue
        try:
            shape = tuple(layer.output.shape)
        except Exception:  # noqa: BLE001  (a shared or unbuilt layer has no one output: not a tap)
            continue
        if len(shape) != 4 or not shape[1] or not shape[2] or h % shape[1] or w % shape[2]:
            continue
        s = h // shape[1]
        if s == w // shape[2] and s & (s - 1) == 0:
            strides[layer.name] = s
    return strides


def cut_points(model: Any) -> list[str]:
    """The layers every path from the input to the output goes through (no residual or branch skips them),
    in graph order: in a topological order, exactly the positions no connection jumps over."""
    layers = model.get_config()["layers"]
    pos = {lc["name"]: i for i, lc in enumerate(layers)}
    jumped = [0] * (len(layers) + 1)  # difference array: +1 after the source, -1 at the target
    for i, lc in enumerate(layers):
        for src in inbound_names(lc):
            if src in pos and pos[src] + 1 < i:
                jumped[pos[src] + 1] += 1
                jumped[i] -= 1
    cuts, running = [], 0
    for i, lc in enumerate(layers):
        running += jumped[i]
        if running == 0:
            cuts.append(lc["name"])
    return cuts


def find_taps(model: Any, size: tuple[int, int], spec: Any = None) -> dict[int, str]:
    """Stride -> layer name for the strides of :data:`STRIDES` that ``model`` reaches at ``size``.

    The spec's ``stride<s>`` alias wins; otherwise the last layer at that stride that every path goes
    through (a ResNet's block output, not a layer inside its residual branch), the feature map just
    before the next downsampling.
    """
    strides = layer_strides(model, size)
    taps: dict[int, str] = {}
    for name in cut_points(model):  # graph order: later layers overwrite earlier ones
        s = strides.get(name)
        if s in STRIDES:
            taps[s] = name
    if spec is not None:
        for s in STRIDES:
            alias = tap_alias(s)
            if alias in spec.layers:
                target = spec.layers[alias]
                if strides.get(target) != s:
                    where = f"stride {strides[target]}" if target in strides else "no exact stride"
                    raise ModelError(
                        f"{spec.name}: alias {alias!r} names layer {target!r}, which is at {where} "
                        f"at {size[0]}x{size[1]}; fix the spec's layers"
                    )
                taps[s] = target
    return taps


def require_taps(taps: dict[int, str], wanted: tuple[int, ...], base: str, head: str) -> None:
    missing = [s for s in wanted if s not in taps]
    if missing:
        raise ModelError(
            f"{base}: head {head!r} needs feature maps at strides {', '.join(map(str, missing))}, "
            f"which the base does not have (it has {sorted(taps) or 'none'}); use head fcn32s or another base"
        )
