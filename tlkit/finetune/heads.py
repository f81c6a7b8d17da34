"""Head swap and freezing: a pretrained body with a new classifier for the user's classes.

The finetuning model is::

    Input(raw RGB pixels, 0..255)
      -> Preprocess(mode)                 # inside the model, so exports take raw pixels
      -> base (nested keras.Model, include_top=False), called with training=False
      -> GlobalAveragePooling2D "avg_pool" -> Dropout -> [Dense hidden] -> Dense "predictions"

Calling the base with ``training=False`` keeps its frozen BatchNorm layers in inference
mode (moving statistics used and never updated): a small finetuning batch would otherwise
wreck statistics learned on ImageNet. With ``train_batchnorm`` the unfrozen BatchNorm layers
train, and Keras 3's outer ``training=True`` then reaches them: they normalise by batch
statistics and update their moving averages (synchronized over workers under multi-worker).
"""

from __future__ import annotations

import re
from typing import Any

import keras

from tlkit.errors import ModelError

BASE_NAME = "base"

# Name patterns that identify a block, tried in order: keras.applications and
# tlkit ResNet/DenseNet (conv3_block2_), EfficientNet (block2a_), MobileNetV2
# (block_5_, expanded_conv_), VGG/Xception (block4_), tlkit VGG (conv3_1),
# Inception (mixed5 closes a module), GoogLeNet (inception_4a_), classic nets (conv3).
_BLOCK_PATTERNS = [
    re.compile(r"^(conv\d+_block\d+)_"),
    re.compile(r"^(block\d+[a-z])_"),
    re.compile(r"^(block_\d+)_"),
    re.compile(r"^(expanded_conv)_"),
    re.compile(r"^(block\d+)_"),
    re.compile(r"^(conv\d+)_\d+$"),
    re.compile(r"^(mixed\d+)$"),
    re.compile(r"^(inception_\d[a-z])"),
    re.compile(r"^(conv\d+|cccp\d+|fc\d+)$"),
]


def block_key(layer_name: str, pattern: re.Pattern[str] | None = None) -> str | None:
    """The block a layer name belongs to, or None if its name carries no block.

    ``pattern`` is the model's own (its spec's ``blocks``); without one, the generic
    conventions above are tried in order."""
    for p in [pattern] if pattern is not None else _BLOCK_PATTERNS:
        m = p.match(layer_name)
        if m:
            return next(g for g in m.groups() if g is not None)
    return None


def spec_block_pattern(name: str) -> re.Pattern[str] | None:
    """The block regex of the registered model ``name`` (``<base>_finetune`` also works)."""
    import tlkit

    try:
        spec = tlkit.get_spec(name.removesuffix("_finetune"))
    except (KeyError, ValueError):  # not a registry model: the generic conventions
        return None
    return re.compile(spec.blocks) if spec.blocks else None


def layer_blocks(
    base: keras.Model, pattern: re.Pattern[str] | None = None
) -> list[tuple[str, list[keras.layers.Layer]]]:
    """Group the base's weighted layers into blocks, in order from input to output.

    A layer whose name names no block joins the next named block (so Inception's
    ``conv2d_N`` layers join the ``mixedN`` that closes their module, and a
    DenseNet transition joins the block after it); unnamed layers after the last
    block form a final ``top`` block (e.g. EfficientNet's ``top_conv``).
    """
    blocks: list[tuple[str, list[Any]]] = []
    pending: list[Any] = []
    for layer in base.layers:
        key = block_key(layer.name, pattern)
        if key is None:
            if layer.weights:
                pending.append(layer)
            continue
        if not blocks or blocks[-1][0] != key:
            blocks.append((key, []))
        blocks[-1][1].extend(pending)
        pending = []
        if layer.weights:
            blocks[-1][1].append(layer)
    if pending:
        blocks.append(("top", pending))
    return [(k, ls) for k, ls in blocks if ls]


def build_classifier(
    base_name: str,
    *,
    num_classes: int,
    weights: str | None = "imagenet",
    input_size: tuple[int, int] | None = None,
    dropout: float = 0.2,
    hidden_units: int = 0,
    base_model: keras.Model | None = None,
    multi_label: bool = False,
) -> keras.Model:
    """A finetuning model: preprocessing + pretrained body (frozen) + a new head.

    ``base_model`` may be given to reuse an already built body (it must take
    preprocessed input and have ``include_top=False``). ``multi_label``: the head ends in a
    sigmoid (independent scores per class, :mod:`tlkit.finetune.multilabel`), else a softmax.
    """
    import tlkit
    from tlkit.models.preprocessing import Preprocess

    spec = tlkit.get_spec(base_name)
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    size = tuple(input_size) if input_size else spec.input_shape[:2]
    shape = (*size, spec.input_shape[2])
    if base_model is None:
        base_model = tlkit.build(spec.name, weights=weights, include_top=False, input_shape=shape)
    else:
        # The caller's body stays as it was (name, trainable flags, weights): the classifier gets a copy.
        base_model = _copy_of(base_model)
    # Ours now: named so that get_base, unfreeze_top and saved runs (resume, export) find it by name.
    base_model.name = BASE_NAME
    base_model.trainable = False
    inputs = keras.Input(shape=shape, name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x)
    # float32 output even under mixed precision: softmax in float16 loses small probabilities.
    activation = "sigmoid" if multi_label else "softmax"
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_finetune")


def _copy_of(model: keras.Model) -> keras.Model:
    """A new model with ``model``'s architecture and (copied) weights; ``model`` is not touched."""
    from tlkit._keras_objects import register

    register()  # tlkit's custom layers, for from_config
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def get_base(model: keras.Model) -> keras.Model:
    """The nested pretrained body of a model made by :func:`build_classifier`."""
    try:
        return model.get_layer(BASE_NAME)
    except ValueError:
        raise ModelError(
            f"model {model.name!r} has no nested base named {BASE_NAME!r}; "
            f"was it built by tlkit.finetune.heads.build_classifier?"
        ) from None


def freeze_base(model: keras.Model) -> None:
    """Stage 1: only the head trains."""
    get_base(model).trainable = False


def unfreeze_top(model: keras.Model, n: int | str, *, train_batchnorm: bool = False) -> list[str]:
    """Stage 2: make the top ``n`` blocks of the base trainable (``"all"`` for every block).

    BatchNorm layers stay frozen, in inference mode, unless ``train_batchnorm`` (then they
    train on batch statistics, see the module doc). Returns the unfrozen block names.
    Recompile the model afterwards: Keras fixes the trainable set at compile time.
    """
    base = get_base(model)
    blocks = layer_blocks(base, spec_block_pattern(model.name))
    if n == "all":
        count = len(blocks)
    else:
        count = int(n)
        if count < 0:
            raise ModelError(f"--unfreeze must be >= 0 or 'all', got {n!r}")
        count = min(count, len(blocks))
    chosen = blocks[len(blocks) - count :] if count else []
    base.trainable = True  # the container must be trainable for any sublayer to be
    for layer in base.layers:
        layer.trainable = False
    for _, layers in chosen:
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
                continue
            layer.trainable = True
    return [name for name, _ in chosen]
