"""keras.applications bases behind tlkit's registry, with Keras' own architecture."""

from __future__ import annotations

from typing import Any

import keras


def build_application(
    *,
    application: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    include_top: bool = True,
    weights: str | None = None,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Build ``keras.applications.<application>``; ``weights`` is passed to Keras as is."""
    constructor: Any = getattr(keras.applications, application)
    return constructor(
        include_top=include_top,
        weights=weights,
        input_shape=tuple(input_shape),
        classes=num_classes,
        classifier_activation=classifier_activation,
    )
