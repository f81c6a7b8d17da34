"""Custom layers shared by tlkit's builders (backend-neutral Keras 3).

Every layer here is registered with ``keras.saving.register_keras_serializable``
under the ``tlkit`` package and implements ``get_config``, so a model that uses
it round-trips through a ``.keras`` file without ``custom_objects``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tlkit.errors import ModelError


@keras.saving.register_keras_serializable(package="tlkit")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, sec. 3.3).

    For channel ``i`` of ``N`` at one spatial position::

        b_i = a_i / (k + alpha * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a_j ** 2) ** beta

    with the paper's defaults ``n=5, k=2, alpha=1e-4, beta=0.75``. Note that
    ``alpha`` multiplies the *sum* of squares, as in the paper and
    ``tf.nn.local_response_normalization``; Caffe's LRN divides ``alpha`` by
    ``n`` first, so Caffe's ``alpha=1e-4`` corresponds to ``alpha=2e-5`` here.

    Channels are the last axis. The layer has no weights.
    """

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(size) != size or size < 1 or size % 2 == 0:
            # An even window has no centre channel; the paper and TF both use odd windows.
            raise ModelError(f"LRN size must be a positive odd integer, got {size!r}")
        self.size = int(size)
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs: Any) -> Any:
        radius = self.size // 2
        squared = ops.square(inputs)
        channels = squared.shape[-1]
        if channels is None:
            channels = ops.shape(squared)[-1]
        # Zero-pad the channel axis so that every channel sees a full window; the
        # padded zeros contribute nothing, which reproduces the max/min clipping of
        # the summation bounds at the first and last channels.
        pad = [[0, 0]] * (len(squared.shape) - 1) + [[radius, radius]]
        padded = ops.pad(squared, pad)
        # The window sum is the sum of `size` shifted views of the padded squares;
        # plain slicing keeps this backend-neutral (no depthwise conv or cumsum tricks).
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.size):
            window_sum = window_sum + padded[..., offset : offset + channels]
        return inputs / ops.power(self.k + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta})
        return config
