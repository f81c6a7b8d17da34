"""tlkit: don't be a hero. Transfer learning for image classification on Keras 3.

Importing ``tlkit`` stays light (no TensorFlow); heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

from tlkit.errors import TlkitError
from tlkit.registry import ModelSpec, get_spec, list_models
from tlkit.registry import register as register_model

__version__ = "0.1.0"
__all__ = ["ModelSpec", "TlkitError", "__version__", "build", "get_spec", "list_models", "register_model"]


def build(
    name: str,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    weights: str | None = None,
    include_top: bool = True,
    **kwargs: Any,
) -> Any:
    """Build a registered model as a ``keras.Model`` (see :func:`tlkit.models.factory.build`)."""
    from tlkit.models.factory import build as _build

    return _build(
        name, num_classes=num_classes, input_shape=input_shape, weights=weights, include_top=include_top, **kwargs
    )


# Last, once the package is importable: tlkit's custom Keras layers get registered when Keras
# is imported (or now, if it already is), without importing Keras here.
from tlkit import _keras_objects  # noqa: E402  (last on purpose: the package must be importable)

_keras_objects.install()
