"""``tlkit.build``: the one entry point from a registry name to a ``keras.Model``."""

from __future__ import annotations

from typing import Any

from tlkit.errors import ModelError
from tlkit.registry import ModelSpec, get_spec, load_builder


def resolve_input_shape(
    spec: ModelSpec, input_shape: tuple[int, ...] | None, include_top: bool
) -> tuple[int, int, int]:
    """Validate a requested input shape against what the architecture accepts."""
    if input_shape is None:
        return spec.input_shape
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 2:
        shape = (*shape, spec.input_shape[2])
    if len(shape) != 3 or min(shape) <= 0:
        raise ModelError(f"input_shape must be (H, W) or (H, W, C) with positive sizes, got {input_shape!r}")
    if spec.fixed_input and include_top and shape[:2] != spec.input_shape[:2]:
        h, w = spec.input_shape[:2]
        raise ModelError(
            f"{spec.name} has a fully connected head that fixes its input to {h}x{w}; got "
            f"{shape[0]}x{shape[1]}. Use include_top=False for the convolutional body, or "
            f"tlkit.dense.convert.to_fully_convolutional to evaluate larger images densely."
        )
    if min(shape[:2]) < spec.min_input:
        raise ModelError(
            f"{spec.name} needs inputs of at least {spec.min_input}x{spec.min_input}; got {shape[0]}x{shape[1]}"
        )
    return shape  # type: ignore[return-value]


def build(
    name: str,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    weights: str | None = None,
    include_top: bool = True,
    include_preprocessing: bool = False,
    **kwargs: Any,
) -> Any:
    """Build ``name`` from the registry.

    ``num_classes`` defaults to the spec's (1000 for ImageNet architectures);
    ``weights`` is None (random init), ``"imagenet"`` or a path to a weights file;
    ``include_top=False`` returns the convolutional body (its last feature map).
    ``include_preprocessing=True`` returns a model taking raw RGB 0..255 float pixels: the
    spec's preprocessing mode as one :class:`~tlkit.models.preprocessing.Preprocess` layer
    (named ``preprocess``) in front of the network (nested, named after the spec). Every
    command feeds such a model, so the preprocessing is applied once, inside the graph.
    """
    if include_preprocessing:
        return with_preprocessing(
            build(
                name,
                num_classes=num_classes,
                input_shape=input_shape,
                weights=weights,
                include_top=include_top,
                **kwargs,
            ),
            get_spec(name).preprocessing,
        )
    spec = get_spec(name)
    shape = resolve_input_shape(spec, input_shape, include_top)
    classes = int(num_classes) if num_classes is not None else spec.num_classes
    if classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes!r}")
    if weights is not None:
        from tlkit.weights.resolve import build_pretrained

        return build_pretrained(
            spec, weights=weights, num_classes=classes, input_shape=shape, include_top=include_top, **kwargs
        )
    builder = load_builder(spec)
    return builder(num_classes=classes, input_shape=shape, include_top=include_top, **{**spec.builder_kwargs, **kwargs})


def with_preprocessing(model: Any, mode: str, *, name: str | None = None) -> Any:
    """``model`` behind a ``Preprocess(mode)`` layer: a new model taking raw 0..255 pixels.

    ``model`` itself is not changed (it becomes a nested layer of the returned model). A model
    that already has a Preprocess layer (a finetuned run's, an export's) is refused: its
    preprocessing would run twice.
    """
    import keras

    from tlkit.models.preprocessing import Preprocess

    if any(isinstance(layer, Preprocess) for layer in getattr(model, "layers", ())):
        raise ModelError(
            f"model {model.name!r} already preprocesses its input (it has a Preprocess layer); "
            f"adding {mode!r} preprocessing would apply it twice: feed it raw 0..255 pixels as it is"
        )

    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    x = Preprocess(mode, name="preprocess")(inputs)
    return keras.Model(inputs, model(x), name=name or f"{model.name}_pixels")
