"""One process per output, and an output is never left half-written.

``extract --out`` and ``export --out`` take a lock at start, as run directories do: a second
process on the same output is refused before it loads TensorFlow or a model (here TensorFlow
is made unimportable for it, so any model work would crash instead of refusing), with the
holder's PID, in one line and exit 2. Export picks its version number under that lock. A lock
left by a dead process is taken over. An export that finds no room (``ulimit -f``) says so in
one line and leaves no version behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_RUN, TLKIT, assert_one_line_error, cli_env, make_shapes_folder, start_tlkit, tlkit, wait_for

# Whole CLI runs: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

EXTRACT = ("extract", "--base", "cifar_example", "--weights", "none", "--layer", "penultimate", "--chunk-rows", "4")


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under ``root``: relative path -> SHA-256 ("dir" for folders)."""
    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def no_tensorflow_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a ``tensorflow`` that cannot be imported: a command that gets as
    far as TensorFlow (or Keras, or a model) fails with a traceback instead of a clean refusal."""
    poison = tmp_path / "no_tf"
    (poison / "tensorflow").mkdir(parents=True, exist_ok=True)
    (poison / "tensorflow" / "__init__.py").write_text("raise ImportError('the refused process imported TensorFlow')\n")
    path = os.environ.get("PYTHONPATH", "")
    return cli_env(PYTHONPATH=os.pathsep.join(p for p in (str(poison), path) if p))


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def refused_at_once(args: tuple, cwd: Path, env: dict[str, str]) -> tuple[str, float]:
    t0 = time.monotonic()
    res = tlkit(*args, cwd=cwd, env=env, timeout=60)
    return assert_one_line_error(res), time.monotonic() - t0


def test_two_extracts_to_one_out_the_second_is_refused_at_start(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=8)
    out = tmp_path / "feats.parquet"
    lock = tmp_path / ".feats.parquet.tlkit.lock"
    # A lock left by a killed process: the first run takes it over.
    lock.write_text(json.dumps({"pid": dead_pid(), "host": os.uname().nodename}))
    args = (*EXTRACT, "--data", data, "--out", out)
    first = start_tlkit(*args, cwd=tmp_path, log=tmp_path / "first.log")
    try:
        wait_for(lambda: f'"pid": {first.pid}' in lock.read_text(), timeout=30, proc=first, every=0.02)
        line, seconds = refused_at_once(args, tmp_path, no_tensorflow_env(tmp_path))
        assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
    finally:
        rc = first.wait(timeout=300)
    assert rc == 0, (tmp_path / "first.log").read_text()[-2000:]
    assert f"{out} is in use by another tlkit process (PID {first.pid} on " in line, line
    assert "--out" in line and seconds < 20, (line, seconds)
    # The first run's output is whole, and the lock is gone with it.
    from tlkit.features.store import load_features

    feats, rows, _ = load_features(out)
    assert len(rows) == 24 and feats["penultimate"].shape[0] == 24
    assert not lock.exists() and not (tmp_path / "feats.parquet.parts").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run (1 epoch), made once."""
    root = tmp_path_factory.mktemp("locks")
    make_shapes_folder(root / "shapes", n=4)
    args = ("finetune", "--data", "shapes", "--name", "tiny", *TINY_RUN, "--epochs", "1", "--finetune-epochs", "0")
    r = tlkit(*args, "--quiet", cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return root / "runs" / "tiny"


def test_two_exports_to_one_out_the_second_is_refused_at_start(tmp_path: Path, tiny_run: Path):
    out = tmp_path / "models" / "tiny"
    first = start_tlkit("export", tiny_run, "--out", out, cwd=tmp_path, log=tmp_path / "first.log")
    try:
        wait_for(lambda: (out / ".tlkit.lock").is_file(), timeout=30, proc=first, every=0.02)
        # Without --quiet: a refusal after "loading TensorFlow" would not be one line.
        line, seconds = refused_at_once(("export", tiny_run, "--out", out), tmp_path, no_tensorflow_env(tmp_path))
        assert first.poll() is None, "the first export ended before the second was refused: the test proves nothing"
    finally:
        rc = first.wait(timeout=300)
    assert rc == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert f"{out} is in use by another tlkit process (PID {first.pid} on " in line, line
    assert "omit --version" not in line and seconds < 20, (line, seconds)
    # One export, version 1; the second left nothing (no version 2, no temporary, no lock).
    assert sorted(p.name for p in out.iterdir()) == ["1"]


def _limit_file_size(nbytes: int):
    def child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return child


def test_export_that_finds_no_room_is_one_line_and_leaves_no_version(tmp_path: Path, tiny_run: Path):
    out = tmp_path / "models" / "tiny"
    (out / "1").mkdir(parents=True)  # an existing version, which must stay as it was
    (out / "1" / "tlkit.json").write_text('{"version": 1}\n')
    before = snapshot(tmp_path)
    # 100 kB: the variables fit, saved_model.pb (about 470 kB) does not.
    res = subprocess.run(
        [TLKIT, "export", str(tiny_run), "--out", str(out), "--quiet"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(100_000),
    )
    line = assert_one_line_error(res)
    assert f"cannot write the export to {out.resolve()} (File too large" in line, line
    assert "ulimit -f" in line and "free space" in line and "no version was written" in line, line
    assert snapshot(tmp_path) == before  # no version 2, no temporary folder, no lock file


def test_a_version_that_appears_meanwhile_is_not_blamed_on_version(tmp_path: Path):
    """Only a writer that skips the lock can take N while an export runs; the message does not tell
    the user to omit a --version they did not give."""
    from tlkit.errors import AlreadyExistsError
    from tlkit.export.versions import refuse_existing

    (tmp_path / "1").mkdir()
    with pytest.raises(AlreadyExistsError, match="appeared while this export ran") as err:
        refuse_existing(tmp_path / "1", tmp_path, explicit=False)
    assert "omit --version" not in str(err.value) and "(2)" in str(err.value)
    with pytest.raises(AlreadyExistsError, match="omit --version for the next free one"):
        refuse_existing(tmp_path / "1", tmp_path)
