"""Inception-v4 (Szegedy et al. 2016): spec (builder in inception_v4.py). Inception-ResNet-v2 is
Keras' own (keras.applications, with ImageNet weights): see applications_specs.py."""

from __future__ import annotations

from tlkit.models._spec_common import GAP
from tlkit.registry import ModelSpec, register

register(
    ModelSpec(
        # One block per module (inception_5b ...); the stem's conv1-conv3 join inception_3a.
        blocks=r"^(inception_\d[a-z])",
        name="inception_v4",
        family="inception_v4",
        builder="tlkit.models.inception_v4:inception_v4",
        input_shape=(299, 299, 3),
        preprocessing="tf",
        layers={"top": "inception_7d_concat", **GAP},
        min_input=75,
        params=42_679_816,
        params_source="Szegedy et al. 2016, Figures 3-9; timm inception_v4 count (BN with scale and offset)",
        description="Inception-v4 (Szegedy et al. 2016), 299x299",
    )
)
