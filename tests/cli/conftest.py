"""Helpers for tests that drive the installed ``tlkit`` command in subprocesses.

The command is the console script beside the interpreter running the tests (the
virtual environment's ``bin/tlkit``), so these tests exercise exactly what a user
runs in a shell: argument parsing, exit codes, stderr, signals, files left behind.
Every call has a bounded time.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TLKIT = str(Path(sys.executable).with_name("tlkit"))


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a user would have: offline, quiet, CPU-only, tests' KERAS_HOME kept."""
    env = {**os.environ, "TLKIT_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    env.pop("TLKIT_DEBUG", None)
    env.update(extra)
    return env


def tlkit(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run ``tlkit ARGS`` to completion (text output); fails the test if it outlives ``timeout``."""
    return subprocess.run(
        [TLKIT, *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start_tlkit(*args: str, cwd: Path, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``tlkit ARGS`` in its own process group (so a signal reaches it as Ctrl-C would)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115  (closed by the child's exit)
    return subprocess.Popen(
        [TLKIT, *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_state(run: Path) -> dict:
    """A run directory's ``state.json``, or {} while it is missing or being replaced."""
    try:
        return json.loads((run / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_history(run: Path) -> list[dict[str, str]]:
    """A run's ``history.csv`` rows: every recorded value but the epoch's duration."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(run / "history.csv"))]


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, every: float = 0.1) -> None:
    """Poll ``predicate()`` until true; fail if ``timeout`` passes or ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited (rc {proc.returncode}) before the condition held")
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 60) -> int:
    """Send ``sig`` to the process group and reap it (SIGKILL if it outlives ``timeout``)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=30)


def assert_one_line_error(result: subprocess.CompletedProcess, rc: int = 2) -> str:
    """A user error: exit ``rc``, exactly one non-empty line on stderr, no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == rc, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def make_shapes_folder(root: Path, n: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Three easy classes drawn with numpy (bright square, dark square, stripes) as PNG files."""
    rng = np.random.default_rng(seed)
    for cls in ("bright", "dark", "stripes"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = rng.integers(0, 60, (size, size, 3))
            if cls == "bright":
                base[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 230
            elif cls == "dark":
                base[:, :] += 120
                base[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 0
            else:
                base[::4] = 250
            Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture()
def shapes(tmp_path: Path) -> Path:
    """A tiny 3-class image folder (36 PNGs of 32x32)."""
    return make_shapes_folder(tmp_path / "shapes")


# A tiny seeded run of tlkit's smallest trainable builder: seconds per epoch on 2 cores.
TINY_RUN = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--input-size",
    "32",
    "32",
    "--batch-size",
    "8",
    "--no-augment",
    "--seed",
    "0",
    "--lr",
    "1e-2",
)


def tensorboard_logs(log_dir: Path) -> dict[str, dict[str, list]]:
    """``{"train"|"validation": {tag: [(step, value)]}}`` of ``finetune --tensorboard``'s logs, read with
    TensorBoard's own reader; scalars as floats, images as their PNG bytes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    out: dict[str, dict[str, list]] = {}
    for sub in ("train", "validation"):
        acc = EventAccumulator(str(log_dir / sub), size_guidance={"tensors": 0})
        acc.Reload()
        out[sub] = {}
        for tag in acc.Tags()["tensors"]:
            events = acc.Tensors(tag)
            values = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
            out[sub][tag] = [(e.step, v[2] if v.dtype == object else float(v)) for e, v in zip(events, values)]
    return out


def png_title(png: bytes) -> list[str]:
    """The lines of a PNG's ``Title`` text (tlkit's pictures store the title they show there)."""
    import io

    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return im.info["Title"].splitlines()
