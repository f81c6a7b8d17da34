"""Learnable upsampling initialised to bilinear interpolation: the first piece of an FCN head.

Long et al. (2015, "Fully convolutional networks for semantic segmentation") upsample coarse
score maps with transposed convolutions ("deconvolution") of stride ``f`` whose kernels start as
bilinear interpolation and may then be learned. :func:`bilinear_kernel` is their ``upsample_filt``
(a ``2f - f mod 2`` square tent, one per channel, channels kept apart); :func:`bilinear_upsampling`
is the Keras layer (backend-neutral, ``padding="same"``, no bias), which maps ``[B, H, W, C]`` to
``[B, fH, fW, C]``.

What it equals (``tests/test_upsample.py``): away from the border, exactly bilinear resizing with
half-pixel centres (``keras.ops.image.resize(..., interpolation="bilinear")``, TensorFlow's and
PyTorch's ``align_corners=False``), within float32 rounding, for every factor. In the outer
``f // 2`` output pixels of each side the transposed convolution sees zero padding where resizing
repeats the edge pixel, so values there are lower; an FCN learns the border, as the paper's did.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def bilinear_kernel(factor: int, channels: int) -> np.ndarray:
    """The ``[k, k, channels, channels]`` kernel (``k = 2 factor - factor mod 2``) of bilinear upsampling by
    ``factor``: a tent on the diagonal, zero between different channels."""
    if int(factor) < 1 or int(channels) < 1:
        raise ValueError(f"factor and channels must be positive, got {factor} and {channels}")
    factor = int(factor)
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    rows, cols = np.ogrid[:size, :size]
    tent = (1 - np.abs(rows - center) / factor) * (1 - np.abs(cols - center) / factor)
    kernel = np.zeros((size, size, channels, channels), np.float32)
    kernel[:, :, np.arange(channels), np.arange(channels)] = tent[:, :, None]
    return kernel


@keras.saving.register_keras_serializable(package="tlkit")
class BilinearUpsamplingInit(keras.initializers.Initializer):
    """Initializer of a transposed convolution's kernel ``[k, k, C, C]``: :func:`bilinear_kernel`."""

    def __init__(self, factor: int) -> None:
        self.factor = int(factor)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        k, _, out_channels, in_channels = (int(s) for s in shape)
        if out_channels != in_channels or k != 2 * self.factor - self.factor % 2:
            raise ValueError(f"a bilinear kernel for factor {self.factor} has shape (k, k, C, C), not {tuple(shape)}")
        return keras.ops.convert_to_tensor(bilinear_kernel(self.factor, in_channels), dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor}


def bilinear_upsampling(
    channels: int, factor: int, *, trainable: bool = True, name: str | None = None
) -> keras.layers.Conv2DTranspose:
    """A stride-``factor`` transposed convolution of ``channels`` maps that starts as bilinear upsampling
    (FCN's score upsampling; ``trainable=False`` keeps it fixed, as FCN-32s's final upsampling was)."""
    factor = int(factor)
    return keras.layers.Conv2DTranspose(
        int(channels),
        2 * factor - factor % 2,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsamplingInit(factor),
        trainable=trainable,
        name=name,
    )
