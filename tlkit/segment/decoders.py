"""Segmentation heads on a base's taps: FCN-32s/16s/8s (Long et al. 2015) and a U-Net-style decoder.

FCN (the paper's Sec. 4.2 and its reference ``voc-fcn*s/net.py``): a 1x1 score convolution on the
top feature map (``score_fr``) and on each skip (``score_pool4`` at stride 16, ``score_pool3`` at
stride 8), all zero-initialised as in the reference code, so at first FCN-16s and FCN-8s score with
the top map alone, as FCN-32s does, but interpolated in steps (x2, x2, then x8: not the same numbers
as one x32 bilinear step). Each coarser score map is upsampled x2 by a transposed convolution
initialised to bilinear interpolation and learned (:func:`tlkit.dense.upsample.bilinear_upsampling`),
then summed with the skip's scores; the final upsampling to the input size is fixed bilinear interpolation
(``UpSampling2D(interpolation="bilinear")``: half-pixel centres, edges repeated, no C x C kernel).

U-Net (Ronneberger et al. 2015), on a pretrained encoder: the top map reduced by a 1x1 conv, then
per skip (stride 16, 8, 4): x2 upsampling (bilinear-initialised transposed convolution), concatenation
with the skip, two 3x3 conv + BatchNorm + ReLU; a 1x1 score layer at stride 4, bilinear to full size.

Skips at the same stride as the running map (a dilated base) are fused without upsampling.
"""

from __future__ import annotations

from typing import Any

import keras

from tlkit.dense.upsample import bilinear_upsampling

# FCN's names for a skip at stride 2^k: pool<k>.
SKIP_NAMES = {16: "pool4", 8: "pool3", 4: "pool2", 2: "pool1"}
UNET_WIDTHS = {32: 256, 16: 256, 8: 128, 4: 64, 2: 32}


def fcn_head(feats: list[Any], strides: list[int], num_classes: int, taps: tuple[int, ...]) -> Any:
    """FCN scores: ``feats`` / ``strides`` list the skips coarse to fine, then the top map last; ``taps`` are the
    skips' nominal strides (16, 8: their names; a dilated base has them at its output stride or finer)."""
    c = int(num_classes)
    score = keras.layers.Conv2D(c, 1, kernel_initializer="zeros", name="score_fr")(feats[-1])
    cur = strides[-1]
    for feat, s, nominal in zip(feats[:-1], strides[:-1], taps):
        tag = SKIP_NAMES.get(nominal, f"stride{nominal}")
        if cur > s:
            score = bilinear_upsampling(c, cur // s, name=f"upscore_{tag}")(score)
        skip = keras.layers.Conv2D(c, 1, kernel_initializer="zeros", name=f"score_{tag}")(feat)
        score = keras.layers.Add(name=f"fuse_{tag}")([score, skip])
        cur = s
    return _to_full_size(score, cur)


def unet_head(feats: list[Any], strides: list[int], num_classes: int, taps: tuple[int, ...]) -> Any:
    """U-Net-style decoder; arguments as for :func:`fcn_head`."""
    cur = strides[-1]
    x = _conv_bn_relu(feats[-1], UNET_WIDTHS.get(cur, 256), 1, "dec_top")
    for feat, s, nominal in zip(feats[:-1], strides[:-1], taps):
        if cur > s:
            x = bilinear_upsampling(int(x.shape[-1]), cur // s, name=f"dec{nominal}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{nominal}_concat")([x, feat])
        width = UNET_WIDTHS.get(nominal, 64)
        x = _conv_bn_relu(x, width, 3, f"dec{nominal}_conv1")
        x = _conv_bn_relu(x, width, 3, f"dec{nominal}_conv2")
        cur = s
    score = keras.layers.Conv2D(int(num_classes), 1, name="score")(x)
    return _to_full_size(score, cur)


def _conv_bn_relu(x: Any, filters: int, kernel: int, name: str) -> Any:
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _to_full_size(score: Any, stride: int) -> Any:
    if stride > 1:
        score = keras.layers.UpSampling2D(stride, interpolation="bilinear", name="upscore")(score)
    # float32 logits even under mixed precision (the loss and the argmax read them).
    return keras.layers.Activation("linear", dtype="float32", name="logits")(score)
