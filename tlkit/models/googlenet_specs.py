"""GoogLeNet / Inception v1: specs (builder in googlenet.py)."""

from __future__ import annotations

from tlkit.models._spec_common import COMPUTED
from tlkit.registry import ModelSpec, register

# Unfreezing blocks: one per Inception module (inception_4a_...), and the stem convolutions.
_BLOCKS = r"^(inception_\d[a-z])|^(conv\d+|cccp\d+|fc\d+)$"

# --- GoogLeNet ---------------------------------------------------------------
register(
    ModelSpec(
        blocks=_BLOCKS,
        name="googlenet",
        family="googlenet",
        builder="tlkit.models.googlenet:googlenet",
        input_shape=(224, 224, 3),
        preprocessing="tf",
        layers={"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"},
        params=6_998_552,
        params_source=COMPUTED + "; the paper's Table 1 sums to about 6.8M (rounded per layer)",
        description="GoogLeNet / Inception v1 (Szegedy et al. 2015); aux classifiers optional",
    )
)
register(
    ModelSpec(
        blocks=_BLOCKS,
        name="googlenet_aux",
        family="googlenet",
        builder="tlkit.models.googlenet:googlenet",
        input_shape=(224, 224, 3),
        preprocessing="tf",
        builder_kwargs={"aux_classifiers": True},
        layers={"avg_pool": "avg_pool", "penultimate": "avg_pool", "classifier": "predictions"},
        fixed_input=True,
        params=13_378_280,
        params_source=COMPUTED + " (main 6,998,552 + two aux heads)",
        description="GoogLeNet with its two auxiliary classifiers (outputs: main, aux1, aux2)",
    )
)
