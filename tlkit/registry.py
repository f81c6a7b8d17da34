"""The model registry: every architecture tlkit can build, as plain data.

This module must stay light: it imports neither Keras nor TensorFlow, so that
``tlkit models`` and ``tlkit --help`` answer instantly. Builders are named by a
``"module:function"`` entry point and imported only when a model is built.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tlkit.errors import ModelError

# Preprocessing modes (see tlkit.models.preprocessing):
#   "caffe": RGB->BGR, subtract ImageNet mean (VGG, keras ResNet v1)
#   "tf":    x / 127.5 - 1 (Inception, Xception, MobileNetV2, ResNet v2)
#   "torch": x / 255, then ImageNet mean/std (DenseNet)
#   "lite":  (x - 127) / 128 (EfficientNet-Lite, as published)
#   "none":  the model rescales inside (keras EfficientNet) or takes raw pixels
#   "unit":  x / 255 (tlkit's own models trained from scratch)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "lite", "none", "unit")


@dataclass(frozen=True)
class ModelSpec:
    """Everything tlkit knows about one architecture, without building it."""

    name: str
    family: str
    builder: str  # "module:function", called with keyword arguments only
    input_shape: tuple[int, int, int]
    preprocessing: str
    num_classes: int = 1000
    layers: Mapping[str, str] = field(default_factory=dict)  # alias -> layer name
    params: int | None = None  # published count: weights + biases + BN scale/offset
    params_source: str = ""
    weights: tuple[str, ...] = ()  # pretrained sources: "imagenet"
    fixed_input: bool = False  # a Flatten+Dense head fixes the input size
    min_input: int = 32  # smallest spatial size the body accepts
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def has_imagenet(self) -> bool:
        return "imagenet" in self.weights

    def resolve_layer(self, name: str) -> str:
        """Map an alias such as ``fc7`` to the model's layer name (or pass through)."""
        return self.layers.get(name, name)


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ModelSpec, *, aliases: tuple[str, ...] = ()) -> ModelSpec:
    """Add a spec to the registry, beside the built-in ones; names and aliases must be unique."""
    _ensure_loaded()  # the built-ins first: a user's spec must neither hide them nor take their names
    if spec.preprocessing not in PREPROCESSING_MODES:
        raise ModelError(
            f"{spec.name}: preprocessing {spec.preprocessing!r} is not one of {PREPROCESSING_MODES}"
        )
    for key in (spec.name, *aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ModelError(f"model name {key!r} is already registered")
    _REGISTRY[spec.name] = spec
    for alias in aliases:
        _ALIASES[alias] = spec.name
    return spec


from tlkit.errors import UnknownModelError  # noqa: E402  (re-exported)


def get_spec(name: str) -> ModelSpec:
    """Return the spec for ``name`` (or an alias); unknown names list close matches."""
    _ensure_loaded()
    raw = name.strip().lower()
    # "VGG-16", "vgg_16" and "vgg16" all mean vgg16; "vgg11-lrn" means vgg11_lrn.
    for key in (raw, raw.replace("-", "_"), raw.replace("-", ""), raw.replace("-", "").replace("_", "")):
        key = _ALIASES.get(key, key)
        if key in _REGISTRY:
            return _REGISTRY[key]
    key = raw.replace("-", "_")
    candidates = sorted(set(_REGISTRY) | set(_ALIASES))
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Run `tlkit models` for all {len(_REGISTRY)} names."
    )


def list_models(pattern: str = "*", *, family: str | None = None) -> list[ModelSpec]:
    """Specs whose name matches the glob ``pattern`` (and ``family``, if given)."""
    _ensure_loaded()
    return [
        s
        for name, s in sorted(_REGISTRY.items())
        if fnmatch.fnmatch(name, pattern) and (family is None or s.family == family)
    ]


def families() -> list[str]:
    _ensure_loaded()
    return sorted({s.family for s in _REGISTRY.values()})


def load_builder(spec: ModelSpec) -> Callable[..., Any]:
    module_name, func_name = spec.builder.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


_LOADED = False


def _ensure_loaded() -> None:
    """Load the built-in catalog once (a registry that is merely not empty may hold only a
    user's spec). The flag is set first: the catalog's own register() calls pass through."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    try:
        from tlkit.models import catalog  # noqa: F401  (registers every spec on import)
    except BaseException:
        _LOADED = False
        raise
