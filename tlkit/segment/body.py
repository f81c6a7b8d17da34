"""The convolutional body a segmenter is built on: a registered base, pretrained weights kept.

* A base with a global-pooling head (EfficientNet, ResNet, MobileNet, DenseNet, ...): its body
  (``include_top=False``); its last feature map, before the pooling, is the stride-32 feature.
* A base with a fixed Flatten + Dense head (VGG, AlexNet): the whole classifier goes through tlkit's
  dense conversion (:func:`tlkit.dense.convert.convert`), which makes fc6 a 7x7 convolution and fc7 a
  1x1 convolution holding the Dense weights (Long et al.'s "convolutionalized" classifier); fc8 is
  dropped (the segmenter scores its own classes). fc6 gets a ZeroPadding2D of half its kernel in
  front (FCN's reference code pads the input by 100 px and crops instead), so fc7 is ``H/32 x W/32``.

Every body must give maps of exactly ``H/s x W/s``; a base whose "valid" convolutions and poolings
give other sizes (AlexNet: 6x6 at 227) is refused in one line.
"""

from __future__ import annotations

from typing import Any

import keras

from tlkit.errors import ModelError


def build_body(spec: Any, *, size: tuple[int, int], weights: str | None) -> Any:
    """A functional model from preprocessed pixels ``[B, H, W, C]`` to the base's stride-32 feature map."""
    import tlkit

    shape = (int(size[0]), int(size[1]), spec.input_shape[2])
    try:
        if spec.fixed_input:
            body = _converted_body(spec, shape, weights)
        else:
            body = tlkit.build(spec.name, weights=weights, include_top=False, input_shape=shape)
    except ModelError:
        raise
    except ValueError as exc:  # Keras: a "valid" layer with a negative output size
        raise ModelError(f"{spec.name} cannot be built at {size[0]}x{size[1]}: {str(exc).splitlines()[0]}") from None
    out = tuple(body.output.shape)
    if len(out) != 4 or out[1] is None or shape[0] != 32 * out[1] or shape[1] != 32 * out[2]:
        raise ModelError(
            f"{spec.name}: its last feature map is {out[1]}x{out[2]} at {size[0]}x{size[1]}, not {size[0] // 32}x"
            f"{size[1] // 32} (stride 32); its 'valid' layers do not tile the image, so FCN heads cannot align "
            "their scores: use a base with 'same' padding (efficientnet_lite0, resnet50, vgg16)"
        )
    return body


def _converted_body(spec: Any, shape: tuple[int, int, int], weights: str | None) -> Any:
    """pool5 -> fc6 (7x7 conv, "same" by its own padding) -> fc7 (1x1 conv), weights from the classifier."""
    import tlkit
    from tlkit.dense.convert import convert

    fc6_name, fc7_name = spec.resolve_layer("fc6"), spec.resolve_layer("fc7")
    full = tlkit.build(spec.name, weights=weights, include_top=True)  # the native size: the head fixes it
    conversion = convert(full)
    layer_names = {layer.name for layer in conversion.model.layers}
    if fc6_name not in layer_names or fc7_name not in layer_names:
        raise ModelError(f"{spec.name}: the converted classifier has no {fc6_name!r} / {fc7_name!r} convolutions")
    fc6, fc7 = conversion.model.get_layer(fc6_name), conversion.model.get_layer(fc7_name)
    body = tlkit.build(spec.name, weights=None, include_top=False, input_shape=shape)
    for layer in body.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    kh, kw = fc6.kernel_size
    pad = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
    x = keras.layers.ZeroPadding2D(pad, name=f"{fc6_name}_pad")(body.output)
    x = fc7(fc6(x))
    return keras.Model(body.input, x, name=f"{spec.name}_fcn")
