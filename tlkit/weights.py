"""Weight resolution (placeholder until the weights issue lands)."""

from __future__ import annotations

from typing import Any

from tlkit.registry import ModelSpec, load_builder


def build_pretrained(spec: ModelSpec, *, weights: str, num_classes: int,
                     input_shape: tuple[int, int, int], include_top: bool, **kwargs: Any) -> Any:
    if spec.family != "keras_applications":
        raise ValueError(f"{spec.name} has no pretrained weights source yet; use weights=None")
    return load_builder(spec)(num_classes=num_classes, input_shape=input_shape,
                              include_top=include_top, weights=weights,
                              **{**spec.builder_kwargs, **kwargs})
