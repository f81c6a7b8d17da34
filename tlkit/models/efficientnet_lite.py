"""EfficientNet-Lite0..2 (Tan & Le 2019; the "efficientnet-lite" release for mobile/edge).

The Lite variants differ from EfficientNet-B0 in ways that matter for weights:

* ReLU6 everywhere instead of swish (quantization friendly),
* no squeeze-and-excitation,
* the stem (32 filters) and the head (1280 filters) are fixed, not scaled, and the first
  and last stages keep their single block at every depth (TF-lite ``fix_head_stem``);
  Lite1 (width 1.0, depth 1.1, 240x240) and Lite2 (1.1, 1.2, 260x260) scale the rest,
* preprocessing is ``(x - 127) / 128`` on 0..255 RGB (tlkit mode ``"lite"``),
  applied outside the model, as in the published TF evaluation code.

Padding is TensorFlow "same" (for stride 2: pad less on the top/left), which is
what Keras ``padding="same"`` does; the published PyTorch port reproduces it with
``Conv2dStaticSamePadding``. BatchNorm epsilon is 1e-3 (the TF release's value).

Layer names follow keras.applications EfficientNet: blocks are
``block{stage}{letter}_...`` with stages 1..7 and letters a, b, c, ... within a
stage (``block1a``, ``block2a``, ``block2b``, ...; 16 blocks in all).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import layers

from tlkit.errors import WeightsError

BN_EPSILON = 1e-3
# TF's BN decay 0.99 is Keras momentum 0.99.
BN_MOMENTUM = 0.99

# (expand ratio, kernel, stride, output channels, repeats), one row per stage.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DEPTH_DIVISOR = 8

Blocks = tuple[tuple[int, int, int, int, int], ...]


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """The TF reference's channel rounding: nearest multiple of ``divisor``, never below 90%."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def scaled_blocks(width: float = 1.0, depth: float = 1.0) -> Blocks:
    """Lite0's stages scaled by ``width`` (channels) and ``depth`` (repeats, rounded up);
    the first and last stages keep their repeats, as in the Lite reference."""
    last = len(LITE0_BLOCKS) - 1
    return tuple(
        (e, k, s, round_filters(c, width), r if i in (0, last) else math.ceil(depth * r))
        for i, (e, k, s, c, r) in enumerate(LITE0_BLOCKS)
    )


def block_names(blocks: Blocks = LITE0_BLOCKS) -> list[str]:
    """Keras block prefixes in order (``block1a``, ``block2a``, ``block2b``, ...)."""
    return [f"block{s + 1}{string.ascii_lowercase[r]}" for s, row in enumerate(blocks) for r in range(row[4])]


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(
    x: keras.KerasTensor,
    *,
    prefix: str,
    filters_in: int,
    filters_out: int,
    expand_ratio: int,
    kernel: int,
    stride: int,
    drop_rate: float,
) -> keras.KerasTensor:
    """Inverted residual block without squeeze-excitation (the Lite form)."""
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv")(x)
        x = _bn(f"{prefix}_expand_bn")(x)
        x = _relu6(f"{prefix}_expand_activation")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dwconv")(x)
    x = _bn(f"{prefix}_bn")(x)
    x = _relu6(f"{prefix}_activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
    x = _bn(f"{prefix}_project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth ("drop connect"): drops the whole residual branch per sample.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def efficientnet_lite(
    *,
    width: float = 1.0,
    depth: float = 1.0,
    name: str = "efficientnet_lite0",
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.2,
) -> keras.Model:
    """EfficientNet-Lite with ``width`` / ``depth`` multipliers (Lite0: 1.0/1.0, Lite1: 1.0/1.1,
    Lite2: 1.1/1.2); the stem (32) and head (1280) stay fixed.

    Expects inputs preprocessed as ``(x - 127) / 128`` (see :mod:`tlkit.models.preprocessing`,
    mode ``"lite"``). ``include_top=False`` returns the ``top_activation`` feature map
    (7x7x1280 at 224x224).
    """
    blocks = scaled_blocks(width, depth)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)

    names = iter(block_names(blocks))
    total = sum(row[4] for row in blocks)
    index = 0
    filters_in = STEM_FILTERS
    for expand, kernel, stride, filters_out, repeats in blocks:
        for r in range(repeats):
            x = _mbconv(
                x,
                prefix=next(names),
                filters_in=filters_in,
                filters_out=filters_out,
                expand_ratio=expand,
                kernel=kernel,
                stride=stride if r == 0 else 1,
                drop_rate=drop_connect_rate * index / total,
            )
            filters_in = filters_out
            index += 1

    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def efficientnet_lite0(**kwargs: object) -> keras.Model:
    """EfficientNet-Lite0: 4,652,008 trainable parameters with the 1000-class head."""
    return efficientnet_lite(**{"width": 1.0, "depth": 1.0, "name": "efficientnet_lite0", **kwargs})  # type: ignore[arg-type]


# --- converting the published PyTorch weights --------------------------------------


@dataclass
class ConversionReport:
    """What a conversion used: every state-dict tensor lands in exactly one list."""

    used: dict[str, str] = field(default_factory=dict)  # torch name -> keras variable path
    ignored: list[str] = field(default_factory=list)  # counters with no Keras equivalent
    layers: list[str] = field(default_factory=list)  # Keras layers that received weights

    @property
    def accounted(self) -> int:
        return len(self.used) + len(self.ignored)


# Keras BatchNormalization variable order, with the PyTorch names of the same tensors.
_BN_TORCH = ("weight", "bias", "running_mean", "running_var")


def _torch_sources(model: keras.Model) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (kind, torch prefix) for every layer that holds weights."""
    src: dict[str, tuple[str, str]] = {
        "stem_conv": ("conv", "_conv_stem"),
        "stem_bn": ("bn", "_bn0"),
        "top_conv": ("conv", "_conv_head"),
        "top_bn": ("bn", "_bn1"),
        "predictions": ("dense", "_fc"),
    }
    # The model's own blocks, in order (block1a, block2a, ...): index i is the state dict's _blocks.i.
    prefixes = [
        m.group(1) for layer in model.layers if (m := re.fullmatch(r"(block\d+[a-z])_project_conv", layer.name))
    ]
    for i, prefix in enumerate(prefixes):
        t = f"_blocks.{i}"
        src.update(
            {
                f"{prefix}_expand_conv": ("conv", f"{t}._expand_conv"),
                f"{prefix}_expand_bn": ("bn", f"{t}._bn0"),
                f"{prefix}_dwconv": ("dwconv", f"{t}._depthwise_conv"),
                f"{prefix}_bn": ("bn", f"{t}._bn1"),
                f"{prefix}_project_conv": ("conv", f"{t}._project_conv"),
                f"{prefix}_project_bn": ("bn", f"{t}._bn2"),
            }
        )
    return src


def load_torch_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> ConversionReport:
    """Copy a PyTorch EfficientNet-Lite state dict into ``model`` (built with the 1000-class top).

    Layouts: conv OIHW -> HWIO; depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); Dense
    (out, in) -> (in, out). Every name and shape is checked; every tensor must be
    used exactly once (``num_batches_tracked`` counters are listed as ignored), and
    every Keras layer with weights must receive them. Raises ``ValueError`` otherwise.
    """
    sources = _torch_sources(model)
    report = ConversionReport()
    uses: dict[str, int] = {}

    def take(key: str) -> np.ndarray:
        if key not in state_dict:
            raise WeightsError(f"state dict has no tensor {key!r} (needed by the Keras model)")
        uses[key] = uses.get(key, 0) + 1
        return np.asarray(state_dict[key])

    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in sources:
            raise WeightsError(f"no PyTorch source for Keras layer {layer.name!r}")
        kind, prefix = sources[layer.name]
        if kind == "bn":
            keys = [f"{prefix}.{n}" for n in _BN_TORCH]
            values = [take(k) for k in keys]
        elif kind == "conv":
            keys = [f"{prefix}.weight"]
            values = [take(keys[0]).transpose(2, 3, 1, 0)]
        elif kind == "dwconv":
            keys = [f"{prefix}.weight"]
            w = take(keys[0])
            if w.ndim != 4 or w.shape[1] != 1:
                raise WeightsError(f"{keys[0]}: expected a depthwise kernel (C, 1, kh, kw), got {w.shape}")
            values = [w.transpose(2, 3, 0, 1)]
        else:  # dense
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
            values = [take(keys[0]).T, take(keys[1])]
        targets = layer.weights
        if len(targets) != len(values):
            raise WeightsError(
                f"{layer.name}: Keras has {len(targets)} variables, the state dict "
                f"gives {len(values)} ({', '.join(keys)})"
            )
        for key, var, value in zip(keys, targets, values):
            if tuple(var.shape) != value.shape:
                raise WeightsError(
                    f"{key} {tuple(state_dict[key].shape)} does not fit {var.path} "
                    f"{tuple(var.shape)} (after layout change: {value.shape})"
                )
            report.used[key] = var.path
        layer.set_weights([v.astype(np.float32) for v in values])
        report.layers.append(layer.name)

    twice = sorted(k for k, n in uses.items() if n > 1)
    if twice:
        raise WeightsError(f"state dict tensors used more than once: {twice[:5]}")
    for key in state_dict:
        if key in report.used:
            continue
        # Batch counters are training bookkeeping, not weights (Keras has no equivalent).
        if key.endswith(".num_batches_tracked") and np.asarray(state_dict[key]).size == 1:
            report.ignored.append(key)
        else:
            raise WeightsError(
                f"state dict tensor {key!r} {np.asarray(state_dict[key]).shape} has "
                "no place in the Keras model (architecture mismatch?)"
            )
    return report
