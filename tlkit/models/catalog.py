"""Every built-in architecture: imports each family's ``*_specs`` module, which registers it.

The facts of one model (spec, weights entries, layer aliases) live in its family's
``<family>_specs.py`` beside the builder; this module only lists the families. No Keras
import. Parameter counts follow the papers and torchvision: trainable weights and biases
including BatchNorm scale/offset, excluding BatchNorm moving statistics; each names its source.
"""

from __future__ import annotations

from tlkit.models import (  # noqa: F401  (each registers its family's specs on import)
    alexnet_specs,
    allcnn_specs,
    applications_specs,
    cifar_resnet_specs,
    densenet_specs,
    efficientnet_lite_specs,
    fractalnet_specs,
    googlenet_specs,
    inception_v4_specs,
    lenet_specs,
    resnet_specs,
    vgg_specs,
)
