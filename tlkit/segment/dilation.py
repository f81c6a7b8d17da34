"""Output stride 16 or 8 through dilated ("atrous") convolutions, keeping the pretrained weights.

Yu & Koltun (2016) and DeepLab (Chen et al. 2015/2017): to get a denser feature map from a classifier
without retraining it, set the stride of the layers that would take the map below ``output_stride``
to 1 and dilate every later convolution by the factor lost, so each kernel still sees the same
neighbours it saw in training (the NTHU slides on dilated convolutions: "Useful for semantic
segmentation, increasing segmentation accuracy"). :func:`dilate` does this on a functional model's
config and copies the weights unchanged (same shapes: only strides, dilation rates and paddings change).

What it refuses (one line, naming the layer): a pooling layer that would have to become stride 1
(pooling cannot be dilated: DenseNet's transitions, GoogLeNet's and Inception's pools), a "valid"
convolution that would have to keep its map size without a ZeroPadding2D of its own in front, a
transposed convolution, and nested models inside the body.
"""

from __future__ import annotations

import copy
from typing import Any

import keras

from tlkit.errors import ModelError
from tlkit.segment.taps import inbound_names

_CONVS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D")
_POOLS = ("MaxPooling2D", "AveragePooling2D")
_GLOBAL = ("GlobalAveragePooling2D", "GlobalMaxPooling2D")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def dilate(model: Any, output_stride: int, *, base: str = "") -> Any:
    """A copy of the functional ``model`` whose output stride is ``output_stride`` (16 or 8), weights copied.

    Every downsampling layer whose output would be coarser than ``output_stride`` becomes stride 1, and each
    later convolution with a kernel larger than 1 is dilated by the stride lost before it.
    """
    what = base or model.name
    config = copy.deepcopy(model.get_config())
    if "layers" not in config:
        raise ModelError(f"{what}: output stride {output_stride} needs a functional body; this one is not")
    by_name = {lc["name"]: lc for lc in config["layers"]}
    consumers: dict[str, list[str]] = {}
    for lc in config["layers"]:
        for src in inbound_names(lc):
            consumers.setdefault(src, []).append(lc["name"])
    stride: dict[str, int | None] = {}  # the layer's output stride in the original model (None: no map)
    dil: dict[str, int] = {}  # the factor its output is denser than in the original
    for lc in config["layers"]:
        name, cls, cfg = lc["name"], lc["class_name"], lc["config"]
        ins = inbound_names(lc)
        if not ins:
            stride[name], dil[name] = 1, 1
            continue
        spatial = [i for i in ins if stride.get(i) is not None]
        if cls in ("Functional", "Sequential", "Model"):
            raise ModelError(f"{what}: output stride {output_stride} cannot dilate inside nested model {name!r}")
        if not spatial:  # whole-image context (squeeze-excitation's pooled branch)
            stride[name], dil[name] = None, 1
            continue
        s_in = max(stride[i] for i in spatial)  # type: ignore[type-var]
        d_in = max(dil[i] for i in spatial)
        if len({(stride[i], dil[i]) for i in spatial}) > 1:
            raise ModelError(f"{what}: layer {name!r} merges maps of different strides; cannot dilate it")
        if cls in _GLOBAL:
            stride[name], dil[name] = None, 1
            continue
        if cls == "Conv2DTranspose":
            raise ModelError(f"{what}: output stride {output_stride} cannot dilate transposed convolution {name!r}")
        s = _pair(cfg.get("strides", 1))[0] if cls in _CONVS + _POOLS else 1
        kernel = _pair(cfg.get("kernel_size", cfg.get("pool_size", 1)))
        s_out = s_in * s
        d_out = d_in
        if s > 1 and s_out > output_stride:  # (part of) this downsampling goes; later layers dilated by the rest
            if cls in _POOLS and max(kernel) > 1:  # a 1x1 pooling (Keras ResNetV2's shortcut) only subsamples
                raise ModelError(
                    f"{what}: output stride {output_stride} needs pooling layer {name!r} at stride 1, and a pooling "
                    f"cannot be dilated to keep its weights' meaning; use output stride 32 or a base whose "
                    f"downsampling is by strided convolutions (efficientnet_lite0, resnet50, mobilenet_v2)"
                )
            kept = min(s_out, output_stride) // min(s_in, output_stride)
            cfg["strides"] = [kept, kept]
            d_out = s_out // min(s_out, output_stride)
        if d_in > 1 and max(kernel) > 1:
            if cls in _POOLS:
                raise ModelError(
                    f"{what}: output stride {output_stride} would need pooling layer {name!r} dilated by {d_in}, "
                    "which Keras cannot do; use output stride 32 or another base"
                )
            if cls in _CONVS:
                cfg["dilation_rate"] = [d_in, d_in]
        if cls in _CONVS and max(kernel) > 1 and (d_in > 1 or d_out > d_in) and cfg.get("padding") == "valid":
            _pad_for(by_name, consumers, ins, name, kernel, d_in, what)
        stride[name], dil[name] = s_out, d_out
    for lc in config["layers"]:
        lc.pop("build_config", None)  # the shapes it records are the undilated ones: rebuild on the real shapes
    new = keras.Model.from_config(config)
    new.set_weights(model.get_weights())
    return new


def _pad_for(
    by_name: dict[str, Any],
    consumers: dict[str, list[str]],
    ins: list[str],
    name: str,
    kernel: tuple[int, int],
    d: int,
    what: str,
) -> None:
    """A "valid" conv made stride 1 or dilated keeps its map size only through its own ZeroPadding2D in
    front: set that padding to the dilated kernel's symmetric half, ``d (k - 1) / 2`` a side."""
    pad = by_name[ins[0]] if len(ins) == 1 else None
    if pad is None or pad["class_name"] != "ZeroPadding2D" or consumers.get(pad["name"]) != [name]:
        raise ModelError(
            f"{what}: layer {name!r} is a 'valid' convolution without its own ZeroPadding2D; at stride 1 it would "
            "shrink the map, so this base cannot be dilated: use output stride 32"
        )
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ModelError(f"{what}: layer {name!r} has an even kernel {kernel}; it cannot be dilated symmetrically")
    ph, pw = d * (kernel[0] - 1) // 2, d * (kernel[1] - 1) // 2
    pad["config"]["padding"] = [[ph, ph], [pw, pw]]
