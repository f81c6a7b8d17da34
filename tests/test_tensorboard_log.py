"""``tlkit.finetune.tensorboard_log``: summaries written without the ``tensorboard`` package and read
back with TensorBoard's reader; a resume's truncation of epochs the state does not vouch for."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

tb_reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

# Writes epochs 0..3 (a scalar and a confusion PNG each) with TensorFlow alone: the tensorboard
# package is made unimportable first, as in an environment that never installed it.
WRITER = textwrap.dedent(
    """
    import sys
    sys.modules["tensorboard"] = None
    import numpy as np
    import tensorflow as tf
    from tlkit import plots
    from tlkit.finetune.tensorboard_log import _CoreSummary
    try:
        tf.summary.scalar("x", 1.0, step=0)
    except Exception as exc:  # TensorFlow's TBNotInstalledError
        print(type(exc).__name__, "from tf.summary.scalar")
    writer = tf.summary.create_file_writer(sys.argv[1])
    with writer.as_default():
        for step in range(4):
            _CoreSummary().scalar("epoch_loss", 1.0 / (step + 1), step=step)
            png = plots.confusion_matrix_png(np.array([[step, 1], [0, 2]]), ["a", "b"], about=f"epoch {step + 1}")
            _CoreSummary().png("confusion_matrix", png, step=step)
    writer.close()
    """
)


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("tb") / "validation"
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(log_dir)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TBNotInstalledError from tf.summary.scalar" in result.stdout  # so the writer above really went without it
    return log_dir


def _read(log_dir: Path) -> dict[str, list]:
    from tensorboard.util import tensor_util

    acc = tb_reader.EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
    }


def test_written_without_tensorboard_read_by_its_reader(logged):
    from tensorboard.backend.event_processing import plugin_event_accumulator

    tags = _read(logged)
    assert [(s, float(v)) for s, v in tags["epoch_loss"]] == [(s, pytest.approx(1.0 / (s + 1))) for s in range(4)]
    for step, value in tags["confusion_matrix"]:
        width, height, png = value
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (int(width), int(height))
            assert im.info["Title"].splitlines()[:2] == [
                f"epoch {step + 1}",
                f"accuracy {(step + 2) / (step + 3):.4f} ({step + 3} images)",
            ]
    # The plugins TensorBoard shows them with: scalars and images.
    acc = plugin_event_accumulator.EventAccumulator(str(logged))
    acc.Reload()
    assert set(acc.PluginTagToContent("scalars")) == {"epoch_loss"}
    assert set(acc.PluginTagToContent("images")) == {"confusion_matrix"}


def test_truncate_drops_epochs_from_next_epoch_and_kill_leftovers(logged, tmp_path):
    import shutil

    from tlkit.finetune.tensorboard_log import truncate

    log_dir = tmp_path / "tensorboard"
    shutil.copytree(logged, log_dir / "validation")
    (log_dir / "validation" / ".events.out.tfevents.1.tmp").write_bytes(b"half a rewrite")
    assert truncate(log_dir, 2) == 4  # a scalar and an image at each of steps 2 and 3
    tags = _read(log_dir / "validation")
    assert {tag: [s for s, _ in v] for tag, v in tags.items()} == {"epoch_loss": [0, 1], "confusion_matrix": [0, 1]}
    assert float(tags["epoch_loss"][1][1]) == pytest.approx(0.5)
    assert sorted(p.name.startswith(".") for p in (log_dir / "validation").iterdir()) == [False]
    assert truncate(log_dir, 2) == 0  # nothing past the state any more: files left as they are
    assert truncate(tmp_path / "absent", 0) == 0
