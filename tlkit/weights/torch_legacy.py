"""A restricted reader for legacy (pre-zip) PyTorch ``torch.save`` files, without torch.

A legacy file (``torch.save(obj, f, _use_new_zipfile_serialization=False)``) is a
sequence of pickles followed by raw storage bytes:

1. the magic number ``0x1950a86a20f9469cfc6c``,
2. the protocol version (1001),
3. ``sys_info`` (endianness, type sizes),
4. the object itself: for a state dict an ``OrderedDict`` of tensors, each built by
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` where
   ``storage`` is a persistent id ``('storage', torch.FloatStorage, key, location, numel[, view])``,
5. the list of storage keys, then per key an 8-byte little-endian element count and
   that many elements of raw data.

Unpickling arbitrary data runs arbitrary code, so :class:`RestrictedUnpickler`
resolves only the handful of globals a tensor state dict needs and maps them to
tlkit's own harmless stand-ins (never to torch). Any other global is refused with
:class:`UnsafePickleError` at the moment the pickle names it, before any call.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from typing import Any, NamedTuple

import numpy as np

from tlkit.errors import WeightsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype (little-endian; bfloat16 is widened later).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class LegacyTorchError(WeightsError):
    """The file is not a readable legacy PyTorch state dict (names the file and why)."""


class UnsafePickleError(LegacyTorchError):
    """The pickle names a global outside the allowed set; nothing from it was called."""


# The stand-ins are NamedTuples, not dataclasses: the pickle BUILD opcode can rewrite an
# object's __dict__ after it was checked (a frozen dataclass has one); a tuple has none,
# so BUILD on it fails and the load is refused.
class _StorageType(NamedTuple):
    """Stand-in for ``torch.FloatStorage`` and friends: only carries the dtype."""

    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    stype: _StorageType
    numel: int
    view: tuple[str, int, int] | None  # (view key, offset, size) in very old files


class _TensorRef(NamedTuple):
    """A tensor whose storage bytes come after the object pickle; resolved later."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise LegacyTorchError(f"{what} must be a tuple of ints, got {value!r}")
    return value


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Safe stand-in for ``torch._utils._rebuild_tensor_v2``: validates and records."""
    if not isinstance(storage, _StorageRef):
        raise LegacyTorchError(f"_rebuild_tensor_v2 expects a storage, got {type(storage).__name__}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise LegacyTorchError(f"bad storage offset {storage_offset!r}")
    size_t = _as_int_tuple(size, "tensor size")
    stride_t = _as_int_tuple(stride, "tensor stride")
    if len(size_t) != len(stride_t) or any(v < 0 for v in size_t + stride_t):
        raise LegacyTorchError(f"bad tensor geometry: size {size_t}, stride {stride_t}")
    if backward_hooks:
        raise LegacyTorchError("tensors with backward hooks are not supported")
    return _TensorRef(storage, storage_offset, size_t, stride_t)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """Safe stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its data."""
    if not isinstance(data, _TensorRef):
        raise LegacyTorchError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    return data


class _Callable:
    """A fresh, immutable handle on an allowed function, one per lookup.

    The pickle BUILD opcode can set attributes on any object it holds; handing out
    tlkit's module-level functions would let a file change them (``__defaults__``)
    for later loads. This wrapper has no ``__dict__`` and refuses ``setattr``.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, key: str, value: Any) -> None:
        raise LegacyTorchError(f"the pickle tries to set {key!r} on {self._fn.__name__}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _Callable(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): lambda: _Callable(_rebuild_parameter),
    **{("torch", name): (lambda n=name, d=dtype: _StorageType(n, d)) for name, dtype in STORAGE_DTYPES.items()},
}  # (module, name) -> factory of the harmless stand-in


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`, to tlkit's stand-ins.

    ``find_class`` is the only way a pickle obtains a callable (GLOBAL, STACK_GLOBAL
    and the EXT opcodes all go through it), so refusing here means a forbidden
    global is never called. Each lookup returns a fresh stand-in, so nothing one
    file does to the objects it is given can affect another load.
    """

    def __init__(self, file: Any, source: str = "<stream>") -> None:
        super().__init__(file, encoding="utf-8")
        self.source = source
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]()
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load: the pickle references the global "
                f"'{module}.{name}', which is not one a tensor state dict needs (allowed: "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}). "
                "Nothing from the file was executed."
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise LegacyTorchError(f"{self.source}: unexpected persistent id {pid!r:.200}")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        # The BUILD opcode can rewrite a dataclass's __dict__: check the dtype is still ours.
        if not isinstance(stype, _StorageType) or STORAGE_DTYPES.get(stype.name) != stype.dtype:
            raise LegacyTorchError(f"{self.source}: persistent id has no storage type: {pid!r:.200}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise LegacyTorchError(f"{self.source}: malformed storage id {pid!r:.200}")
        if view is not None and not (
            isinstance(view, tuple)
            and len(view) == 3
            and isinstance(view[0], str)
            and isinstance(view[1], int)
            and isinstance(view[2], int)
        ):
            raise LegacyTorchError(f"{self.source}: malformed storage view {view!r:.200}")
        ref = _StorageRef(key, stype, numel, view)
        # The same storage may be shared by several tensors; the first sighting defines it.
        base = self.storages.setdefault(key, _StorageRef(key, stype, numel, None))
        if base.stype != stype:
            raise LegacyTorchError(f"{self.source}: storage {key} appears with two types")
        return ref


def _load_pickle(unpickler_stream: io.BytesIO, source: str, what: str) -> tuple[Any, RestrictedUnpickler]:
    """Load the next pickle of the stream with a fresh restricted unpickler."""
    up = RestrictedUnpickler(unpickler_stream, source)
    start = unpickler_stream.tell()
    try:
        return up.load(), up
    except LegacyTorchError:
        raise
    except (
        EOFError,
        pickle.UnpicklingError,
        struct.error,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        RecursionError,
        MemoryError,
    ) as exc:
        size = len(unpickler_stream.getbuffer())
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower() or unpickler_stream.tell() >= size:
            raise LegacyTorchError(
                f"{source}: file is truncated: it ends (at byte {size:,}) inside the {what} "
                f"pickle that starts at byte {start:,}"
            ) from None
        raise LegacyTorchError(
            f"{source}: cannot read the {what} pickle at byte {start:,}: {type(exc).__name__}: {exc}"
        ) from None


def load_state_dict(path: str | os.PathLike) -> collections.OrderedDict[str, np.ndarray]:
    """Read a legacy ``torch.save`` state dict into ``{name: numpy array}`` (in file order).

    Raises :class:`UnsafePickleError` for any global outside the allowed set and
    :class:`LegacyTorchError` for truncated or malformed files; both name the file.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        data = f.read()
    if data[:4] == b"PK\x03\x04":
        raise LegacyTorchError(
            f"{source}: this is a zip-format PyTorch file (torch >= 1.6 default); tlkit's reader "
            "handles only the legacy format (torch.save(..., _use_new_zipfile_serialization=False))"
        )
    if not data:
        raise LegacyTorchError(f"{source}: file is empty")
    stream = io.BytesIO(data)
    # The first three pickles hold plain data (no globals); same restricted unpickler.
    magic, _ = _load_pickle(stream, source, "magic number")
    if magic != MAGIC_NUMBER:
        raise LegacyTorchError(f"{source}: not a legacy PyTorch file (bad magic number)")
    version, _ = _load_pickle(stream, source, "protocol version")
    if version != PROTOCOL_VERSION:
        raise LegacyTorchError(f"{source}: unsupported legacy protocol version {version!r}")
    sys_info, _ = _load_pickle(stream, source, "sys_info")
    little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True

    obj, up = _load_pickle(stream, source, "state dict")
    keys, _ = _load_pickle(stream, source, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise LegacyTorchError(f"{source}: storage key list is malformed")

    # Raw storages, in the order of ``keys``: int64 element count, then the elements.
    arrays: dict[str, np.ndarray] = {}
    pos = stream.tell()
    for key in keys:
        if key not in up.storages:
            raise LegacyTorchError(f"{source}: storage {key} is listed but no tensor uses it")
        ref = up.storages[key]
        dtype = ref.stype.dtype if little_endian else ref.stype.dtype.newbyteorder(">")
        if pos + 8 > len(data):
            raise LegacyTorchError(
                f"{source}: file is truncated: expected the 8-byte size of storage {key} at byte "
                f"{pos:,}, but the file has {len(data):,} bytes"
            )
        (count,) = struct.unpack("<q" if little_endian else ">q", data[pos : pos + 8])
        pos += 8
        nbytes = count * dtype.itemsize
        if count != ref.numel:
            raise LegacyTorchError(f"{source}: storage {key} declares {ref.numel} elements but its data holds {count}")
        if pos + nbytes > len(data):
            raise LegacyTorchError(
                f"{source}: file is truncated: storage {key} needs {nbytes:,} bytes from byte "
                f"{pos:,}, but the file has {len(data):,} bytes"
            )
        arrays[key] = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += nbytes
    if pos != len(data):
        raise LegacyTorchError(f"{source}: {len(data) - pos:,} unexpected bytes after the last storage")
    missing = set(up.storages) - set(arrays)
    if missing:
        raise LegacyTorchError(f"{source}: storages {sorted(missing)[:5]} are used but not stored")

    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(obj, dict):
        raise LegacyTorchError(f"{source}: expected a state dict, found {type(obj).__name__}")
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise LegacyTorchError(f"{source}: entry {name!r:.80} is {type(value).__name__}, not a tensor")
        out[name] = _materialize(value, arrays, source, name)
    return out


def _materialize(t: _TensorRef, arrays: dict[str, np.ndarray], source: str, name: str) -> np.ndarray:
    # Checked again here, right before memory is touched: whatever the pickle did after
    # _rebuild_tensor_v2, as_strided must only ever see in-bounds, non-negative geometry.
    if not (
        type(t) is _TensorRef
        and type(t.offset) is int
        and t.offset >= 0
        and all(type(v) is int and v >= 0 for v in (*t.size, *t.stride))
        and len(t.size) == len(t.stride)
    ):
        raise LegacyTorchError(f"{source}: tensor {name} has invalid geometry")
    flat = arrays[t.storage.key]
    if t.storage.view is not None:  # very old files: a view into another storage
        view_key, view_offset, view_size = t.storage.view
        base = arrays.get(view_key, flat)
        flat = base[view_offset : view_offset + view_size]
    numel = 1
    for n in t.size:
        numel *= n  # Python ints: no overflow on hostile sizes
    if numel > flat.size:
        # A state dict's tensors never need more elements than their storage (no stride-0
        # broadcasting): refuse instead of allocating what a hostile file asks for.
        raise LegacyTorchError(
            f"{source}: tensor {name} (size {t.size}) has more elements than its storage of {flat.size}"
        )
    if numel:
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
        if last >= flat.size:
            raise LegacyTorchError(
                f"{source}: tensor {name} (size {t.size}, stride {t.stride}, offset {t.offset}) "
                f"reads past the end of its storage of {flat.size} elements"
            )
        item = flat.itemsize
        arr = np.lib.stride_tricks.as_strided(
            flat[t.offset :], shape=t.size, strides=tuple(s * item for s in t.stride), writeable=False
        )
        arr = np.array(arr, copy=True)
    else:
        arr = np.zeros(t.size, dtype=flat.dtype)
    if t.storage.stype.name == "BFloat16Storage":  # numpy has no bfloat16: widen exactly
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)
