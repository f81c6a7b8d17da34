"""Input preprocessing for every mode in :data:`tlkit.registry.PREPROCESSING_MODES`.

All modes take raw RGB pixels in 0..255 (float or integer), channels last:

* ``"caffe"``: RGB -> BGR, then subtract the ImageNet BGR mean [103.939, 116.779, 123.68]
* ``"tf"``:    ``x / 127.5 - 1``
* ``"torch"``: ``x / 255``, then ``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``
* ``"lite"``:  ``(x - 127) / 128`` (EfficientNet-Lite, as published)
* ``"none"``:  identity (the model rescales inside, or wants raw pixels)
* ``"unit"``:  ``x / 255``

:class:`Preprocess` is a Keras layer (backend-neutral, serializable) for putting
the step inside a model; :func:`preprocess_numpy` is the same arithmetic in numpy.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tlkit.errors import ConfigError
from tlkit.registry import PREPROCESSING_MODES

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def _check_mode(mode: str) -> str:
    if mode not in PREPROCESSING_MODES:
        raise ConfigError(f"unknown preprocessing mode {mode!r}; known: {', '.join(PREPROCESSING_MODES)}")
    return mode


def preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    """Apply ``mode`` to a numpy array of 0..255 RGB pixels (..., H, W, 3); returns float32."""
    _check_mode(mode)
    x = np.asarray(x, dtype=np.float32)
    if mode == "none":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "lite":
        return (x - 127.0) / 128.0
    _check_channels(x.shape[-1], mode)
    if mode == "caffe":
        return x[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    # torch
    return (x / 255.0 - np.asarray(TORCH_MEAN, dtype=np.float32)) / np.asarray(TORCH_STD, dtype=np.float32)


def _check_channels(channels: Any, mode: str) -> None:
    if channels is not None and int(channels) != 3:
        raise ConfigError(f"preprocessing mode {mode!r} needs 3 RGB channels, got {channels}")


@keras.saving.register_keras_serializable(package="tlkit")
class Preprocess(keras.layers.Layer):
    """Keras layer applying a tlkit preprocessing ``mode`` to 0..255 RGB inputs.

    Integer inputs (e.g. uint8 images) are cast to the layer's compute dtype first.
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = _check_mode(mode)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        if self.mode in ("caffe", "torch"):
            _check_channels(input_shape[-1], self.mode)
        self.built = True

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "none":
            return x
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        mean = ops.convert_to_tensor(TORCH_MEAN, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(TORCH_STD, dtype=self.compute_dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
