"""Multi-worker finetuning as two real processes on loopback (TF_CONFIG, as a cluster sets it).

Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy with the pinned versions, so a
multi-worker stage runs tlkit's own loop (``tlkit.finetune.distributed_train``); these tests show it
trains the same model as one process, on every worker, and survives losing a worker.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import TLKIT, cli_env, make_shapes_folder, png_title, stop, tensorboard_logs, tlkit, wait_for

from tlkit.distribute import free_ports, tf_config

# A small, fast run for the tests of failure and launch (the parity test has its own flags).
FLAGS = (
    "--base",
    "cifar_example",
    "--weights",
    "none",
    "--input-size",
    "32",
    "32",
    "--batch-size",
    "30",
    "--no-augment",
    "--seed",
    "0",
    "--lr",
    "3e-2",
    "--dropout",
    "0",
    "--unfreeze",
    "all",
)

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow
TOLERANCE = 1e-5  # relative, per logged value


def _history(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "history.csv")))


def _start_workers(cwd: Path, args: list[str], n: int = 2, **env: str) -> list[subprocess.Popen]:
    ports = free_ports(n)
    procs = []
    for i in range(n):
        log = open(cwd / f"worker-{i}.log", "w")  # noqa: SIM115  (closed by the child's exit)
        procs.append(
            subprocess.Popen(
                [TLKIT, "finetune", *args, "--distribute", "multi-worker"],
                cwd=cwd,
                env=cli_env(TF_CONFIG=tf_config(ports, i), **env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def _wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p, signal.SIGKILL)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_shapes_folder(tmp_path / "shapes", n=12)


# What the README's sentence is about: 48 training images in global batches of 16 (3 steps per
# epoch, the batch order reshuffled every epoch), augmentation on (crop, flip, colour), and in
# stage 2 the top block of a ResNet-18 trains with its BatchNorm layers (--train-batchnorm: batch
# statistics, synchronized over the workers). Dropout is off: it draws its masks per worker.
PARITY_FLAGS = (
    "--base",
    "resnet18",
    "--weights",
    "none",
    "--input-size",
    "32",
    "32",
    "--batch-size",
    "16",
    "--seed",
    "0",
    "--lr",
    "1e-2",
    "--dropout",
    "0",
    "--unfreeze",
    "1",
    "--train-batchnorm",
    "--epochs",
    "2",
    "--finetune-epochs",
    "2",
)


def test_two_workers_train_what_one_process_trains(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=20)  # 60 images: 48 to train, 12 to validate
    args = ["--data", str(data), *PARITY_FLAGS, "--name", "mw", "--tensorboard"]
    opened = tmp_path / "opened"
    opened.mkdir()
    procs = _start_workers(tmp_path, args, TLKIT_DEBUG_OPENED=str(opened))
    assert _wait_all(procs, timeout=400) == [0, 0], [
        (tmp_path / f"worker-{i}.log").read_text()[-2000:] for i in range(2)
    ]
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    # The chief alone wrote the run directory; the other worker wrote nothing in the runs folder.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mw"]
    run = tmp_path / "runs" / "mw"
    assert (run / "metrics.json").exists()
    assert "BatchNorm trained" in (run / "train.log").read_text()
    report = json.loads((run / "data_report.json").read_text())
    assert sum(report["class_counts"]["train"].values()) == 48  # 3 steps of 16 per epoch
    # Each worker opened its own half of the training files every epoch, together each file once,
    # and its own half of the validation files (in the same place of every global batch each epoch).
    lines = {i: (opened / f"opened-worker-{i}.txt").read_text().splitlines() for i in range(2)}
    by = {(i, tag): [] for i in range(2) for tag in ("0", "1", "2", "3", "val")}
    for i, rows in lines.items():
        for row in rows:
            tag, path = row.split("\t")
            by[i, tag].append(path)
    # After training, the chief alone evaluates the whole validation split once more (metrics.json).
    final = by[0, "val"][24:]
    by[0, "val"] = by[0, "val"][:24]
    assert {k: len(v) for k, v in by.items()} == {(i, tag): 24 for i in range(2) for tag in ("0", "1", "2", "3", "val")}
    for e in "0123":
        assert len(set(by[0, e]) | set(by[1, e])) == 48 and not set(by[0, e]) & set(by[1, e])
    assert len(set(by[0, "val"])) == len(set(by[1, "val"])) == 6 and not set(by[0, "val"]) & set(by[1, "val"])
    assert sorted(final) == sorted(set(by[0, "val"]) | set(by[1, "val"]))
    # Every worker ends with the same weights.
    prints = [re.findall(r"final weights fingerprint (\w+)", log) for log in logs]
    assert prints[0] and prints[0] == prints[1], prints
    # The same curves as one process with the same global batch and seed, to float rounding.
    single = tlkit("finetune", "--data", data, *PARITY_FLAGS, "--name", "one", cwd=tmp_path, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    two, one = _history(run), _history(tmp_path / "runs" / "one")
    assert (
        [(r["epoch"], r["stage"]) for r in two]
        == [(r["epoch"], r["stage"]) for r in one]
        == [(str(e), str(s)) for e, s in [(0, 1), (1, 1), (2, 2), (3, 2)]]
    )
    for a, b in zip(two, one):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=TOLERANCE), (a["epoch"], key, a[key], b[key])
    # --tensorboard: the chief alone logs; each epoch once, with its history's values; the confusion
    # image counts the whole validation split (summed over the workers' slices of each batch).
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["train", "validation"]
    tb = tensorboard_logs(run / "tensorboard")
    assert [s for s, _ in tb["train"]["epoch_loss"]] == [0, 1, 2, 3]
    assert [v for _, v in tb["train"]["epoch_loss"]] == pytest.approx([float(r["loss"]) for r in two], rel=1e-6)
    images = tb["validation"]["confusion_matrix"]
    assert [s for s, _ in images] == [0, 1, 2, 3]
    for (step, png), row in zip(images, two):
        assert png_title(png)[:2] == [
            f"epoch {step + 1}",
            f"accuracy {float(row['val_accuracy']):.4f} (val split, 12 images)",
        ]


def test_a_killed_worker_fails_the_job_clearly_and_resume_finishes_it(tmp_path: Path, data: Path):
    # Killed in stage 2, so the resume must bring every worker back into stage 2 at the same epoch.
    args = [
        "--data",
        str(data),
        *FLAGS,
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--finetune-epochs",
        "38",
        "--name",
        "kill",
    ]
    run = tmp_path / "runs" / "kill"
    procs = _start_workers(tmp_path, args, TLKIT_COLLECTIVE_TIMEOUT="20")
    try:
        wait_for(lambda: (run / "history.csv").exists() and len(_history(run)) >= 4, 240, procs[0])
        os.killpg(procs[1].pid, signal.SIGKILL)
        # The survivor does not hang: it stops within the collective timeout, with one clear line.
        rc0 = procs[0].wait(timeout=90)
    finally:
        _wait_all(procs, timeout=30)
    log0 = (tmp_path / "worker-0.log").read_text()
    assert rc0 == 2, log0[-2000:]
    assert "Traceback" not in log0 and "--resume" in log0.strip().splitlines()[-1]
    done = len(_history(run))
    assert 4 <= done < 40
    # Both workers again, with --resume: the job completes, no epoch missing or repeated.
    procs = _start_workers(tmp_path, [*args, "--resume"])
    assert _wait_all(procs, timeout=400) == [0, 0], (tmp_path / "worker-0.log").read_text()[-2000:]
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(40))
    assert [int(r["stage"]) for r in rows] == [1] * 2 + [2] * 38


def test_workers_flag_runs_a_local_job_on_images_in_a_bucket(tmp_path: Path, data: Path, object_stores):
    # The images on the GCS emulator: each worker fetches only its own share of the objects.
    photos = object_stores.upload(data, object_stores.make_bucket("gs://mw-photos") + "/shapes")
    opened = tmp_path / "opened"
    opened.mkdir()
    out = tlkit(
        "finetune",
        "--data",
        photos,
        *FLAGS,
        "--epochs",
        "2",
        "--finetune-epochs",
        "0",
        "--name",
        "local",
        "--workers",
        "2",
        cwd=tmp_path,
        timeout=300,
        env=cli_env(**object_stores.env, TLKIT_DEBUG_OPENED=str(opened)),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "runs" / "local"
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1]
    assert "2 replica(s) in sync" in (run / "train.log").read_text()
    n_train = sum(json.loads((run / "data_report.json").read_text())["class_counts"]["train"].values())
    logs = {i: [r.split("\t") for r in (opened / f"opened-worker-{i}.txt").read_text().splitlines()] for i in range(2)}
    for epoch in ("0", "1"):
        got = [[p for t, p in logs[i] if t == epoch] for i in range(2)]
        assert all(p.startswith(photos + "/") for p in got[0] + got[1])
        assert abs(len(got[0]) - len(got[1])) <= 1 and not set(got[0]) & set(got[1])
        assert len(got[0]) + len(got[1]) == len(set(got[0]) | set(got[1])) == n_train
