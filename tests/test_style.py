"""Style is checked like behaviour: ruff's lint and format check over the repository.

The configuration lives in pyproject.toml ([tool.ruff]); `.ci/run` runs the same two commands.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["tlkit", "tests", "benchmarks", "recipes"]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (it comes with the `test` extra)")
    return [found]


def test_ruff_lint_is_clean() -> None:
    proc = subprocess.run([*_ruff(), "check", *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_applied() -> None:
    proc = subprocess.run(
        [*_ruff(), "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, "run `ruff format tlkit tests benchmarks recipes`:\n" + proc.stdout[-4000:]
