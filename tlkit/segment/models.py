"""Segmenters: a registered base's convolutional body, taps at strides 16/8/4 and an FCN or U-Net head.

The model (:func:`build_segmenter`)::

    Input "image" [B, H, W, 3], raw RGB 0..255 (H, W multiples of 32)
      -> Preprocess(the base's mode) "preprocess"
      -> base (nested keras.Model "base", frozen, called with training=False):
         outputs the skips (stride 16, 8, 4 as the head needs) and the top feature map
      -> head (fcn32s / fcn16s / fcn8s / unet, :mod:`tlkit.segment.decoders`)
      -> "logits" float32 [B, H, W, num_classes] (no softmax)

The base is the body of the registered model (:mod:`tlkit.segment.body`: a VGG's Flatten + Dense
classifier becomes fc6/fc7 convolutions), its taps come from the spec's ``stride<s>`` aliases or the
output shapes (:mod:`tlkit.segment.taps`), and ``output_stride`` 16 or 8 dilates its last stages
(:mod:`tlkit.segment.dilation`). Stage 1 trains the head with the base frozen;
:func:`tlkit.finetune.heads.unfreeze_top` then unfreezes the base's top blocks, as for a classifier.
"""

from __future__ import annotations

from typing import Any

from tlkit.errors import ModelError

HEADS = ("fcn32s", "fcn16s", "fcn8s", "unet")
OUTPUT_STRIDES = (32, 16, 8)
# The skips each head fuses, coarse to fine.
HEAD_SKIPS = {"fcn32s": (), "fcn16s": (16,), "fcn8s": (16, 8), "unet": (16, 8, 4)}


def check_request(base: str, head: str, num_classes: int, input_size: Any, output_stride: int) -> tuple[Any, tuple]:
    """The spec and input size, or a one-line ModelError (no Keras import: the CLI can call it first)."""
    import tlkit

    if head not in HEADS:
        raise ModelError(f"unknown segmentation head {head!r}; choose one of {', '.join(HEADS)}")
    if int(output_stride) not in OUTPUT_STRIDES:
        raise ModelError(f"output stride must be 32, 16 or 8, got {output_stride!r}")
    if int(num_classes) < 2:
        raise ModelError(f"a segmenter needs at least 2 classes (background and one more), got {num_classes}")
    spec = tlkit.get_spec(base)
    size = tuple(int(v) for v in (input_size or spec.input_shape[:2]))
    if len(size) != 2 or min(size) < 32 or size[0] % 32 or size[1] % 32:
        raise ModelError(f"segmentation input size must be two multiples of 32 (e.g. 224 224), got {size}")
    if spec.fixed_input and int(output_stride) != 32:
        raise ModelError(
            f"{spec.name}: output stride {output_stride} needs dilating fc6, the convolution made from its "
            "Flatten + Dense head, and pool4/pool5 made stride 1; use output stride 32, or a base with "
            "strided convolutions (efficientnet_lite0, resnet50) for 16 or 8"
        )
    return spec, size


def build_segmenter(
    base: str,
    *,
    head: str = "fcn8s",
    num_classes: int,
    input_size: tuple[int, int] | None = None,
    weights: str | None = "imagenet",
    output_stride: int = 32,
) -> Any:
    """A segmentation model on the registered ``base`` (see the module doc); ``weights`` as ``tlkit.build``'s."""
    import keras

    from tlkit.finetune.heads import BASE_NAME
    from tlkit.models.preprocessing import Preprocess
    from tlkit.segment.body import build_body
    from tlkit.segment.decoders import fcn_head, unet_head
    from tlkit.segment.dilation import dilate
    from tlkit.segment.taps import find_taps, require_taps

    spec, size = check_request(base, head, num_classes, input_size, output_stride)
    body = build_body(spec, size=size, weights=weights)
    taps = find_taps(body, size, spec)
    wanted = HEAD_SKIPS[head]
    require_taps(taps, wanted, spec.name, head)
    if output_stride != 32:
        body = dilate(body, int(output_stride), base=spec.name)
    outputs = [body.get_layer(taps[s]).output for s in wanted] + [body.output]
    base_model = keras.Model(body.input, outputs, name=BASE_NAME)
    base_model.trainable = False
    strides = [size[0] // int(t.shape[1]) for t in outputs]
    if strides[-1] != int(output_stride):
        raise ModelError(f"{spec.name}: asked for output stride {output_stride}, the body gives {strides[-1]}")

    inputs = keras.Input(shape=(*size, spec.input_shape[2]), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    feats = keras.tree.flatten(base_model(x, training=False))
    make = unet_head if head == "unet" else fcn_head
    logits = make(feats, strides, int(num_classes), wanted)
    return keras.Model(inputs, logits, name=f"{spec.name}_{head}")


def segmenter_info(model: Any) -> dict[str, Any]:
    """What a segmenter is (read from its layers, so it works on a loaded ``.keras`` file too):
    ``base``, ``head``, ``output_stride``, ``taps`` ({layer: stride}), ``num_classes``, ``input_size``."""
    from tlkit.finetune.heads import get_base

    names = {layer.name for layer in model.layers}
    if "score" in names and "dec_top" in names:
        head = "unet"
    elif "score_pool3" in names:
        head = "fcn8s"
    elif "score_pool4" in names:
        head = "fcn16s"
    elif "score_fr" in names:
        head = "fcn32s"
    else:
        raise ModelError(f"model {model.name!r} is not a tlkit segmenter (no score layers)")
    base = get_base(model)
    h, w = (int(v) for v in model.input_shape[1:3])
    taps = {name: h // int(t.shape[1]) for name, t in zip(base.output_names, base.outputs)}
    return {
        "base": model.name.removesuffix(f"_{head}"),
        "head": head,
        "output_stride": h // int(base.outputs[-1].shape[1]),
        "taps": taps,
        "num_classes": int(model.output_shape[-1]),
        "input_size": [h, w],
    }
