"""``tlkit finetune --tensorboard`` from the shell, read back with TensorBoard's own reader.

One tiny seeded run (2 head epochs, then 2 with every block unfrozen, ``--schedule step`` dividing
the rate by 10 every epoch) is stopped with SIGINT after its first epoch; an event a kill between
an epoch's TensorBoard write and its ``state.json`` would leave (epoch ``next_epoch`` logged, not
vouched for) is added; the run is resumed without ``--tensorboard``. The logs must hold every
epoch of both stages once, with the values of ``history.csv``, the scheduled learning rates, and
one confusion-matrix PNG per epoch whose title states that epoch's validation accuracy.
"""

from __future__ import annotations

import csv
import io
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_RUN,
    make_shapes_folder,
    png_title,
    run_state,
    start_tlkit,
    stop,
    tensorboard_logs,
    tlkit,
    wait_for,
)
from PIL import Image

pytestmark = pytest.mark.slow

HEAD_EPOCHS, FT_EPOCHS, LR, FT_LR = 2, 2, 1e-2, 1e-3
ARGS = (
    "finetune",
    "--data",
    "shapes",
    "--name",
    "r",
    *TINY_RUN,
    "--epochs",
    str(HEAD_EPOCHS),
    "--finetune-epochs",
    str(FT_EPOCHS),
    "--finetune-lr",
    str(FT_LR),
    "--unfreeze",
    "all",
    "--schedule",
    "step",
    "--step-epochs",
    "1",
    "--quiet",
)
STALE_LOSS = 99.0


def _add_stale_epoch(log_dir: Path, step: int) -> None:
    """What a kill after TensorBoard's write of epoch ``step`` and before its state.json leaves."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    value = summary_pb2.Summary.Value(
        tag="epoch_loss", tensor=tensor_util.make_tensor_proto(np.float32(STALE_LOSS)), metadata=meta
    )
    writer = EventFileWriter(str(log_dir / "train"))
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("tb")
    make_shapes_folder(tmp / "shapes")
    run = tmp / "runs" / "r"
    proc = start_tlkit(*ARGS, "--tensorboard", cwd=tmp, log=tmp / "first.log")
    wait_for(lambda: run_state(run).get("next_epoch", 0) >= 1, 180, proc, every=0.02)
    rc = stop(proc, signal.SIGINT)
    assert rc == 130, (tmp / "first.log").read_text()[-2000:]
    stopped_at = run_state(run)["next_epoch"]
    assert stopped_at < HEAD_EPOCHS + FT_EPOCHS
    _add_stale_epoch(run / "tensorboard", stopped_at)
    r = tlkit(*ARGS, "--resume", cwd=tmp, timeout=300)  # no --tensorboard: the run's own setting is kept
    assert r.returncode == 0, r.stderr[-3000:]
    return run, tensorboard_logs(run / "tensorboard")


def test_scalars_are_the_history_once_per_epoch_across_stages_and_resume(resumed_run):
    run, logs = resumed_run
    rows = list(csv.DictReader(open(run / "history.csv")))
    epochs = list(range(HEAD_EPOCHS + FT_EPOCHS))
    assert [int(r["epoch"]) for r in rows] == epochs
    assert set(logs["train"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert set(logs["validation"]) == {"epoch_loss", "epoch_accuracy", "confusion_matrix"}
    for sub, prefix in (("train", ""), ("validation", "val_")):
        for name in ("loss", "accuracy"):
            logged = logs[sub][f"epoch_{name}"]
            assert [s for s, _ in logged] == epochs, (sub, name, logged)  # one value per epoch, stale one gone
            want = [float(r[prefix + name]) for r in rows]
            assert [v for _, v in logged] == pytest.approx(want, rel=1e-6), (sub, name)
    # --schedule step --step-epochs 1: /10 every epoch, restarting at --finetune-lr in stage 2.
    schedule = [LR, LR / 10, FT_LR, FT_LR / 10]
    assert [v for _, v in logs["train"]["epoch_learning_rate"]] == pytest.approx(schedule, rel=1e-6)
    assert [float(r["lr"]) for r in rows] == pytest.approx(schedule, rel=1e-6)


def test_confusion_matrix_image_per_epoch_states_its_val_accuracy(resumed_run):
    run, logs = resumed_run
    rows = list(csv.DictReader(open(run / "history.csv")))
    images = logs["validation"]["confusion_matrix"]
    assert [s for s, _ in images] == list(range(HEAD_EPOCHS + FT_EPOCHS))
    for (step, png), row in zip(images, rows):
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        title = png_title(png)
        # The matrix counts the 6 validation images of that epoch: its accuracy is Keras' val_accuracy.
        assert title[0] == f"epoch {step + 1}"
        assert title[1] == f"accuracy {float(row['val_accuracy']):.4f} (val split, 6 images)"
