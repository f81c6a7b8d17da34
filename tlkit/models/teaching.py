"""Lecture-notes modules that are not whole networks, built so ``tlkit inspect`` counts them.

The CS231n notes argue with a few small building blocks: the naive Inception module
and the one with 1x1 bottlenecks (lecture 9, on a 28x28x256 input), and a stack of
three 3x3 convolutions against one 7x7 convolution on C channels. They are not image
classifiers (a 256-channel input, no head), so they are not in the model registry,
where ``finetune`` or ``export`` would accept them: ``tlkit inspect`` looks them up here
(:data:`MODULES`) before the registry. This module imports Keras only inside the
builders, so ``tlkit inspect --help`` can list the names without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TeachingModule:
    """A lecture-notes building block ``tlkit inspect NAME`` can build and count."""

    name: str
    builder: str  # "function" in this module, called as builder(input_shape=...)
    input_shape: tuple[int, int, int]  # the input the notes' figures are about
    description: str


MODULES: dict[str, TeachingModule] = {
    m.name: m
    for m in (
        TeachingModule(
            "inception_naive",
            "inception_naive",
            (28, 28, 256),
            "naive Inception module: 1x1 128, 3x3 192, 5x5 96, 3x3 max pool, concatenated",
        ),
        TeachingModule(
            "inception_reduced",
            "inception_reduced",
            (28, 28, 256),
            "Inception module with 64-filter 1x1 bottlenecks before the 3x3 and 5x5 and after the pool",
        ),
        TeachingModule(
            "three_3x3",
            "three_3x3",
            (56, 56, 64),
            "three stacked 3x3 convolutions, C channels in and out (C = input depth)",
        ),
        TeachingModule(
            "one_7x7", "one_7x7", (56, 56, 64), "one 7x7 convolution, C channels in and out (C = input depth)"
        ),
    )
}


def find_module(name: str) -> TeachingModule | None:
    """The teaching module called ``name`` ("inception-naive" and "inception_naive" alike), or None."""
    return MODULES.get(name.strip().lower().replace("-", "_"))


def build_module(module: TeachingModule, input_shape: tuple[int, int, int] | None = None) -> Any:
    """Build ``module`` (random weights) at ``input_shape`` (default: the notes' input)."""
    return globals()[module.builder](input_shape=tuple(input_shape or module.input_shape))


def _conv(x: Any, filters: int, kernel: int, name: str) -> Any:
    import keras

    # Like GoogLeNet's convolutions: bias + ReLU, "same" padding, so every branch keeps 28x28.
    return keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", name=name)(x)


def inception_naive(*, input_shape: tuple[int, int, int] = (28, 28, 256)) -> Any:
    """The naive Inception module (Szegedy et al. 2015, Fig. 2a) with CS231n's filter counts.

    Parallel 1x1 conv 128, 3x3 conv 192, 5x5 conv 96 and 3x3/1 max pool on the input,
    concatenated: 128 + 192 + 96 + 256 = 672 channels (28x28x672 on 28x28x256). The pool
    branch passes all input channels through, which is why the depth only grows.
    """
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    b1 = _conv(inputs, 128, 1, "inception_1x1")
    b2 = _conv(inputs, 192, 3, "inception_3x3")
    b3 = _conv(inputs, 96, 5, "inception_5x5")
    b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="inception_pool")(inputs)
    outputs = keras.layers.Concatenate(axis=-1, name="inception")([b1, b2, b3, b4])
    return keras.Model(inputs, outputs, name="inception_naive")


def inception_reduced(*, input_shape: tuple[int, int, int] = (28, 28, 256)) -> Any:
    """The Inception module with dimension reductions (Fig. 2b), CS231n's filter counts.

    GoogLeNet's own :func:`tlkit.models.googlenet.inception_module` with 1x1 128,
    1x1 64 -> 3x3 192, 1x1 64 -> 5x5 96, 3x3 pool -> 1x1 64: 28x28x480 on 28x28x256.
    """
    import keras

    from tlkit.models.googlenet import inception_module

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    outputs = inception_module(
        inputs,
        filters_1x1=128,
        filters_3x3_reduce=64,
        filters_3x3=192,
        filters_5x5_reduce=64,
        filters_5x5=96,
        pool_proj=64,
        name="inception",
    )
    return keras.Model(inputs, outputs, name="inception_reduced")


def three_3x3(*, input_shape: tuple[int, int, int] = (56, 56, 64)) -> Any:
    """Three stacked 3x3 convolutions (stride 1, "same", ReLU between), C = input depth filters
    each: a 7x7 receptive field with 3 x 9C^2 = 27C^2 weights."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for i in (1, 2, 3):
        x = _conv(x, int(input_shape[-1]), 3, f"conv{i}")
    return keras.Model(inputs, x, name="three_3x3")


def one_7x7(*, input_shape: tuple[int, int, int] = (56, 56, 64)) -> Any:
    """One 7x7 convolution (stride 1, "same"), C = input depth filters: 49C^2 weights."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    return keras.Model(inputs, _conv(inputs, int(input_shape[-1]), 7, "conv1"), name="one_7x7")
