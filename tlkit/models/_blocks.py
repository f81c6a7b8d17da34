"""Shared conv / BatchNorm / ReLU helpers and the block-naming convention of
tlkit's ResNet and DenseNet builders (backend-neutral Keras 3).

Layer-name convention (shared with keras.applications ResNet and DenseNet, so
feature taps and "unfreeze the top N blocks" work the same on both):

* stem: every layer before the first block (``conv1_*``, ``pool1*``);
* a block: every layer whose name starts with ``conv{S}_block{I}_`` (stage ``S``
  from 2, block ``I`` from 1), e.g. ``conv3_block2_2_conv``;
* a DenseNet transition between dense blocks: ``pool{S}_*`` for ``S >= 2``
  (``pool2_bn``, ``pool2_conv``, ``pool2_pool``);
* post: the final normalization after the last block (``post_bn``/``post_relu``
  in pre-activation ResNets, ``bn``/``relu`` in DenseNet);
* head: ``avg_pool`` (GlobalAveragePooling2D) then ``predictions`` (Dense).

:func:`layer_groups` applies this convention to any model that follows it.
"""

from __future__ import annotations

import re
from typing import Any

import keras
from keras import layers

# torch.nn.BatchNorm2d defaults: eps 1e-5, and torch's momentum 0.1 weights the
# *new* batch statistic, which is Keras' momentum 0.9 (weight of the old value).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

HEAD_LAYERS = ("avg_pool", "predictions")
_BLOCK_RE = re.compile(r"^conv(\d+)_block(\d+)_")
_TRANSITION_RE = re.compile(r"^pool(\d+)_")


def conv_init(mode: str = "fan_out") -> keras.initializers.Initializer:
    """He (Kaiming) normal init, as torchvision initializes ResNet ("fan_out") and
    DenseNet ("fan_in") convs. A fresh instance per layer: Keras warns when one
    unseeded initializer instance is reused, since it would repeat its values."""
    return keras.initializers.VarianceScaling(scale=2.0, mode=mode, distribution="untruncated_normal")


def batch_norm(x: Any, name: str) -> Any:
    """BatchNormalization over channels with torch's eps and momentum."""
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def conv(x: Any, filters: int, kernel: int, *, name: str, strides: int = 1, groups: int = 1,
         init_mode: str = "fan_out") -> Any:
    """A bias-free conv named ``{name}_conv``.

    Kernels larger than 1 get an explicit symmetric ``{name}_pad`` (kernel // 2)
    and "valid" padding: Keras' "same" pads a stride-2 conv on an even input only
    at the bottom/right, while the papers (and torchvision) pad both sides, so
    explicit padding keeps the sampling grid identical to torch weights.
    """
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=strides, padding="valid", groups=groups,
                         use_bias=False, kernel_initializer=conv_init(init_mode),
                         name=f"{name}_conv")(x)


def conv_bn(x: Any, filters: int, kernel: int, *, name: str, strides: int = 1, groups: int = 1,
            relu: bool = True, init_mode: str = "fan_out") -> Any:
    """Conv, BN (``{name}_bn``) and optionally ReLU (``{name}_relu``): the
    post-activation unit of ResNet v1 (the BN supplies the bias)."""
    x = conv(x, filters, kernel, name=name, strides=strides, groups=groups, init_mode=init_mode)
    x = batch_norm(x, f"{name}_bn")
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def bn_relu(x: Any, name: str) -> Any:
    """BN (``{name}_bn``) then ReLU (``{name}_relu``): a pre-activation."""
    x = batch_norm(x, f"{name}_bn")
    return layers.Activation("relu", name=f"{name}_relu")(x)


def classifier_head(x: Any, *, num_classes: int, classifier_activation: str | None) -> Any:
    """Global average pool (``avg_pool``) and the classifier (``predictions``)."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)


def layer_groups(model: keras.Model) -> list[tuple[str, list[str]]]:
    """Group a model's layer names by the convention above, in network order.

    Returns ``[("stem", [...]), ("conv2_block1", [...]), ..., ("pool2", [...]),
    ..., ("post", [...]), ("head", [...])]``; empty groups are left out. Input
    layers are not listed. An unprefixed layer inside the body (keras.applications
    ResNetV2's auto-named ``max_pooling2d`` shortcuts) joins the block that
    consumes it. "Unfreeze the top N blocks" takes the last N entries whose name
    starts with ``conv`` (and everything after them).
    """
    stem: list[str] = []
    post: list[str] = []
    head: list[str] = []
    units: dict[tuple[int, int, int], tuple[str, list[str]]] = {}
    group_of: dict[str, tuple[int, int, int]] = {}
    loose: list[Any] = []  # unprefixed layers after the first block, in order
    seen_block = False
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = layer.name
        m = _BLOCK_RE.match(name)
        t = _TRANSITION_RE.match(name)
        if m:
            seen_block = True
            key = (int(m.group(1)), 0, int(m.group(2)))
            units.setdefault(key, (f"conv{key[0]}_block{key[2]}", []))
        elif not seen_block:
            stem.append(name)
            continue
        elif t:
            # A transition follows dense block S, so it sorts after that stage's blocks.
            key = (int(t.group(1)), 1, 0)
            units.setdefault(key, (f"pool{key[0]}", []))
        else:
            loose.append(layer)
            continue
        units[key][1].append(name)
        group_of[name] = key
    for layer in reversed(loose):  # consumers come later, so resolve from the end
        key = None
        for node in layer._outbound_nodes:
            if not _in_model(model, node):
                continue  # a use of the layer in another model
            key = group_of.get(node.operation.name)
            if key is not None:
                break
        if key is not None:
            group_of[layer.name] = key
            names = units[key][1]
            # Keep network order inside the block: before its first consumer there.
            consumers = [names.index(n.operation.name) for n in layer._outbound_nodes
                         if n.operation.name in names]
            names.insert(min(consumers) if consumers else len(names), layer.name)
    for layer in loose:
        if layer.name in group_of:
            continue
        if layer.name in HEAD_LAYERS or head:
            head.append(layer.name)
        else:
            post.append(layer.name)
    groups = [("stem", stem)] + [units[k] for k in sorted(units)] + [("post", post), ("head", head)]
    return [(g, names) for g, names in groups if names]


def _in_model(model: keras.Model, node: Any) -> bool:
    """Whether ``node`` (a call of a layer) belongs to ``model``'s graph. Keras 3
    functional models key their nodes as "{id(operation)}_ib-{index}"."""
    keys = getattr(model, "_nodes", None)
    if not keys:
        return True
    op = node.operation
    index = next((i for i, n in enumerate(op._inbound_nodes) if n is node), -1)
    return f"{id(op)}_ib-{index}" in keys


def block_names(model: keras.Model) -> list[str]:
    """The residual / dense block prefixes (``conv2_block1`` ...), in network order."""
    return [g for g, _ in layer_groups(model) if _BLOCK_RE.match(g + "_")]
