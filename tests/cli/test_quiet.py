"""TensorFlow's start-up chatter stays hidden unless --verbose; errors stay visible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import TLKIT, cli_env, make_shapes_folder, tlkit
from PIL import Image
from skimage import data as skdata


def _user_env() -> dict[str, str]:
    # As a user's shell has it: none of the variables the test suite sets to quieten TensorFlow.
    env = cli_env()
    for var in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TLKIT_VERBOSE"):
        env.pop(var, None)
    return env


@pytest.mark.slow
def test_predict_prints_no_tensorflow_startup_lines(tmp_path: Path):
    Image.fromarray(skdata.chelsea()).save(tmp_path / "cat.jpg")
    quiet = tlkit("predict", "--base", "efficientnet_lite0", "cat.jpg", cwd=tmp_path, env=_user_env())
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert "tiger cat" in quiet.stdout or "tabby" in quiet.stdout
    verbose = tlkit("predict", "--base", "efficientnet_lite0", "cat.jpg", "--verbose", cwd=tmp_path, env=_user_env())
    assert verbose.returncode == 0
    assert verbose.stdout == quiet.stdout  # the same answer; only the logging differs


@pytest.mark.slow
def test_training_on_sideways_photos_prints_nothing_with_quiet(tmp_path: Path):
    # The training pipeline as a user's shell runs it (oneDNN on, no log level set): the EXIF turn's
    # uint8 transpose made oneDNN log an ERROR line, and reading the epoch variable upstream of the
    # parallel maps made tf.data log its rewrite under --deterministic. Neither may reach the user.
    data = make_shapes_folder(tmp_path / "shapes")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(skdata.chelsea()[:64, :48]).save(data / "bright" / "turned.jpg", exif=exif)
    res = tlkit(
        "finetune", "--data", data, "--base", "cifar_example", "--weights", "none", "--input-size", "32", "32",
        "--batch-size", "8", "--epochs", "1", "--finetune-epochs", "0", "--quiet",
        cwd=tmp_path, env=_user_env(), timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr == ""


def test_help_never_imports_tensorflow(tmp_path: Path):
    script = (
        "import runpy, sys; sys.argv = ['tlkit', 'finetune', '--help']\n"
        f"try:\n    runpy.run_path({TLKIT!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=_user_env(), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "--resume" in out.stdout


def test_a_failing_tensorflow_start_is_not_hidden(tmp_path: Path):
    # The captured start-up output is replayed when TensorFlow cannot start: here, a broken
    # tensorflow package first on the path.
    fake = tmp_path / "fake"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text(
        "import os\nos.write(2, b'native start-up message\\n')\nraise ImportError('broken tensorflow')\n"
    )
    Image.fromarray(skdata.chelsea()).save(tmp_path / "cat.jpg")
    env = _user_env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake), env.get("PYTHONPATH", "")])
    out = tlkit("predict", "cat.jpg", cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 1
    assert "native start-up message" in out.stderr and "broken tensorflow" in out.stderr


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path):
    import subprocess

    from conftest import make_shapes_folder

    data = make_shapes_folder(tmp_path / "shapes", n=2)
    for i in range(1500):  # a JSON report far larger than a pipe's buffer: the write after `head` exits fails
        (data / "bright" / f"empty-{i:04d}.png").write_bytes(b"")
    out = subprocess.run(
        f"'{TLKIT}' check-data shapes --json | head -c 100; echo \" rc=${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_user_env(),
    )
    assert out.stdout.startswith("{") and out.stdout.rstrip().endswith("rc=141"), out.stdout[-300:]
    assert out.stderr == "", out.stderr
