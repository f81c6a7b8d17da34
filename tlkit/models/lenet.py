"""LeNet-5 and the CS231n CIFAR-10 example network (Keras 3 functional builders)."""

from __future__ import annotations

import keras
from keras import layers


def lenet5(
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 1),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    activation: str = "tanh",
) -> keras.Model:
    """LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

    CONV(6, 5x5) - POOL - CONV(16, 5x5) - POOL - FC(120) - FC(84) - FC(num_classes),
    valid convolutions on a 32x32 input (28 -> 14 -> 10 -> 5).

    Choices, each closer to the paper than the alternatives:

    * ``activation="tanh"`` by default: the paper uses a (scaled) tanh squashing
      function; pass ``activation="relu"`` for the modern variant.
    * Average pooling: the paper's S2/S4 "subsampling" layers average 2x2 blocks.
      Their trainable coefficient and bias per map (12 + 32 parameters) are left
      out, as in every modern re-implementation.
    * C3 is fully connected to S2 (the paper's sparse connection table was an
      engineering compromise), and the output is a Dense layer, not RBF units.

    With those choices and 10 classes the count is 61,706:
    C1 156 + C3 2,416 + C5/fc6 48,120 + F6/fc7 10,164 + fc8 850.

    ``include_top=False`` returns the ``pool2`` feature map (5x5x16 at 32x32).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(6, 5, activation=activation, name="conv1")(inputs)
    x = layers.AveragePooling2D(2, strides=2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation=activation, name="conv2")(x)
    x = layers.AveragePooling2D(2, strides=2, name="pool2")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(120, activation=activation, name="fc6")(x)
        x = layers.Dense(84, activation=activation, name="fc7")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="fc8")(x)
    return keras.Model(inputs, x, name="lenet5")


def cifar_example(
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """The CS231n ConvNet example (Karpathy, CS231n notes, "Convolutional Neural Networks").

    INPUT[32x32x3] - CONV(12 filters 3x3, pad same) - RELU - POOL(2x2 max) - FC(num_classes).
    Count for 10 classes: 3*3*3*12 + 12 = 336 and 16*16*12*10 + 10 = 30,730, total 31,066.

    ``include_top=False`` returns the ``pool1`` feature map (16x16x12 at 32x32).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(12, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, strides=2, name="pool1")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="fc")(x)
    return keras.Model(inputs, x, name="cifar_example")
