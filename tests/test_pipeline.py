"""The main job end to end: finetune, run directory, resume, determinism, distribution, evaluate."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from tlkit.cli import main as cli
from tlkit.finetune.pipeline import FinetuneConfig, finetune

ARTIFACTS = [
    "config.json",
    "labels.json",
    "history.csv",
    "best.keras",
    "last.keras",
    "metrics.json",
    "curves.png",
    "confusion.png",
    "skipped.csv",
    "data_report.json",
    "data_report.txt",
    "train.log",
]


def _png_ok(path: Path) -> None:
    assert path.stat().st_size > 5_000, f"{path} is suspiciously small"
    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 300 and im.size[1] > 200


def _shapes_folder(root: Path, n: int = 24, size: int = 32) -> Path:
    """Three easy classes drawn with numpy: bright square, dark square, horizontal stripes."""
    rng = np.random.default_rng(0)
    for cls in ("bright", "dark", "stripes"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = rng.integers(0, 60, (size, size, 3))
            if cls == "bright":
                base[8:24, 8:24] = 230
            elif cls == "dark":
                base[:, :] += 120
                base[8:24, 8:24] = 0
            else:
                base[::4] = 250
            Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def _tiny_cfg(data: Path, runs: Path, **kw) -> FinetuneConfig:
    defaults = dict(
        data=str(data),
        base="cifar_example",
        weights=None,
        runs_dir=str(runs),
        input_size=(32, 32),
        batch_size=16,
        epochs=2,
        finetune_epochs=1,
        unfreeze="all",
        lr=1e-2,
        augment=None,
    )
    defaults.update(kw)
    return FinetuneConfig(**defaults)


@pytest.mark.slow
def test_main_job_digits_reaches_95_percent(tmp_path, monkeypatch):
    """The README's main job: EfficientNet-Lite0 (offline ImageNet weights) on builtin:digits."""
    monkeypatch.chdir(tmp_path)
    rc = cli.main(
        [
            "finetune",
            "--base",
            "efficientnet_lite0",
            "--data",
            "builtin:digits",
            "--input-size",
            "64",
            "64",
            "--epochs",
            "4",
            "--finetune-epochs",
            "4",
            "--unfreeze",
            "all",
            "--lr",
            "3e-3",
            "--no-augment",
            "--no-flip",
            "--quiet",
        ]
    )
    assert rc == 0
    run = tmp_path / "runs" / "efficientnet_lite0-builtin-digits"
    for name in ARTIFACTS:
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["top1"] >= 0.95, metrics["top1"]
    assert metrics["count"] == 359 and "top5" in metrics
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert all({"precision", "recall"} <= set(v) for v in metrics["per_class"].values())
    _png_ok(run / "curves.png")
    _png_ok(run / "confusion.png")
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    assert [int(r["stage"]) for r in rows] == [1] * 4 + [2] * 4
    assert json.loads((run / "labels.json").read_text()) == [str(d) for d in range(10)]
    # Nothing a user has is overwritten: the same command again is refused.
    assert cli.main(["finetune", "--data", "builtin:digits", "--quiet"]) == 2


def test_bad_files_and_leak_are_reported_and_skipped(tmp_path):
    data = _shapes_folder(tmp_path / "data")
    (data / "bright" / "empty.png").write_bytes(b"")
    (data / "dark" / "notes.jpg").write_text("not an image")
    good = (data / "stripes" / "0.png").read_bytes()
    (data / "stripes" / "truncated.png").write_bytes(good[: len(good) // 2])
    metrics = finetune(_tiny_cfg(data, tmp_path / "runs", name="bad"), quiet=True)
    run = tmp_path / "runs" / "bad"
    skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(open(run / "skipped.csv"))}
    assert skipped == {"empty.png": "empty", "notes.jpg": "not_an_image", "truncated.png": "truncated"}
    assert metrics["count"] > 0
    assert "3 skipped" in (run / "data_report.txt").read_text()


def test_interrupted_run_resumes_without_gaps(tmp_path):
    data = _shapes_folder(tmp_path / "data", n=12)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cfg = _tiny_cfg(data, tmp_path / "runs", name="r", epochs=2, finetune_epochs=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, quiet=True, callbacks=[Stop()])
    run = tmp_path / "runs" / "r"
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "history.csv"))] == [0, 1]
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(cfg, quiet=True)
    finetune(cfg, resume=True, quiet=True)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["stage"]) for r in rows] == [1, 1, 2, 2]
    assert json.loads((run / "state.json").read_text())["done"] is True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point of the test
def test_a_ctrl_c_swallowed_in_a_destructor_still_stops_the_run(tmp_path):
    """Python loses a KeyboardInterrupt raised inside ``__del__`` ("Exception ignored"); TensorFlow's
    objects have destructors, so a signal can land there. The run stops at its next step anyway."""
    import signal

    data = _shapes_folder(tmp_path / "data", n=12)

    class Swallows:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):  # the handler runs here, between bytecodes, and raises in __del__
                pass

    class SignalInDestructor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                obj = Swallows()
                del obj  # KeyboardInterrupt raised and ignored inside __del__: training would go on

    cfg = _tiny_cfg(data, tmp_path / "runs", name="r", epochs=2, finetune_epochs=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, quiet=True, callbacks=[SignalInDestructor()])
    run = tmp_path / "runs" / "r"
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "history.csv"))] == [0]
    assert json.loads((run / "state.json").read_text())["next_epoch"] == 1


def test_same_seed_same_split_and_first_epoch(tmp_path):
    data = _shapes_folder(tmp_path / "data", n=12)
    out = []
    for name in ("a", "b"):
        finetune(_tiny_cfg(data, tmp_path / "runs", name=name, epochs=1, finetune_epochs=0, augment="crop"), quiet=True)
        run = tmp_path / "runs" / name
        first = next(csv.DictReader(open(run / "history.csv")))
        report = json.loads((run / "data_report.json").read_text())
        out.append((first["loss"], first["val_accuracy"], report["class_counts"]))
    assert out[0] == out[1]


@pytest.mark.slow
def test_evaluate_tta_and_ensemble(tmp_path, capsys):
    data = _shapes_folder(tmp_path / "data", n=12)
    for name in ("m1", "m2"):
        finetune(_tiny_cfg(data, tmp_path / "runs", name=name, epochs=1, finetune_epochs=0), quiet=True)
    runs = [str(tmp_path / "runs" / n) for n in ("m1", "m2")]
    assert cli.main(["evaluate", runs[0], "--json"]) == 0
    single = json.loads(capsys.readouterr().out)[runs[0]]
    saved = json.loads(Path(runs[0], "metrics.json").read_text())
    assert single["top1"] == pytest.approx(saved["top1"])
    assert cli.main(["evaluate", runs[0], "--tta", "crops", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[runs[0]]["tta"] == "crops"
    # An ensemble of a run with itself is that run.
    assert cli.main(["evaluate", runs[0], runs[0], "--ensemble", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ensemble"]["top1"] == pytest.approx(single["top1"])
    assert cli.main(["evaluate", *runs, "--ensemble", "--tta", "flip", "--out", str(tmp_path / "ev")]) == 0
    assert "ensemble: top-1" in capsys.readouterr().out
    _png_ok(tmp_path / "ev" / "confusion_ensemble.png")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    data = _shapes_folder(tmp_path / "data", n=12)
    code = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tlkit.finetune.pipeline import FinetuneConfig, finetune
        cfg = FinetuneConfig(data={str(data)!r}, base="cifar_example", weights=None,
                             runs_dir={str(tmp_path / "runs")!r},
                             name="mirrored", input_size=(32, 32), batch_size=16, epochs=1, finetune_epochs=1,
                             unfreeze="all", lr=1e-2, augment=None, distribute="mirrored")
        m = finetune(cfg, quiet=True)
        print("METRICS", json.dumps(m["top1"]))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "runs" / "mirrored" / "train.log").read_text()
    assert "MirroredStrategy, 2 replica(s) in sync" in log  # the run itself used both devices
    top1 = float(out.stdout.split("METRICS ")[1].split()[0])
    from tlkit.finetune.evaluation_runs import evaluate_runs

    again = evaluate_runs([str(tmp_path / "runs" / "mirrored")])
    assert list(again.values())[0]["top1"] == pytest.approx(top1)


@pytest.mark.slow
def test_cache_features_trains_the_head_on_cached_vectors(tmp_path):
    data = _shapes_folder(tmp_path / "data", n=12)
    m = finetune(
        _tiny_cfg(
            data,
            tmp_path / "runs",
            name="cached",
            epochs=3,
            finetune_epochs=1,
            cache_features=True,
            base="efficientnet_lite0",
            weights="imagenet",
            unfreeze="1",
            lr=3e-2,
        ),
        quiet=True,
    )
    run = tmp_path / "runs" / "cached"
    log = (run / "train.log").read_text()
    assert "on cached base features" in log
    assert "cached train features: (" in log and ", 1280)" in log  # EfficientNet-Lite0's pooled channels
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["stage"]) for r in rows] == [1, 1, 1, 2]
    # the checkpoints hold the whole model (preprocessing, base, head), not the head alone
    best = keras.saving.load_model(run / "best.keras")
    assert best.input_shape == (None, 32, 32, 3) and best.get_layer("base") is not None
    assert m["top1"] > 0.5  # three easy classes: well above chance (1/3)


def test_is_chief():
    from tlkit.finetune.pipeline import is_chief

    class Resolver:
        def __init__(self, task_type, task_id, cluster):
            self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

        def cluster_spec(self):
            class Spec:
                def as_dict(inner):
                    return self._cluster

            return Spec()

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief(object())  # a single-process strategy
    assert is_chief(Strategy(Resolver("worker", 0, workers)))
    assert not is_chief(Strategy(Resolver("worker", 1, workers)))
    with_chief = {"chief": ["c:1"], **workers}
    assert is_chief(Strategy(Resolver("chief", 0, with_chief)))
    assert not is_chief(Strategy(Resolver("worker", 0, with_chief)))


# --- the run directory (tlkit.finetune.rundir): names, lock, replace and put back --------------------------


def _fake_run(path: Path, started: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"data": "shapes", "base": "cifar_example"}))
    (path / "train.log").write_text("old log\n")
    if started:
        (path / "last.keras").write_bytes(b"old checkpoint")
        (path / "state.json").write_text('{"next_epoch": 1}')
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", [".", "..", "../x", "a/b", "/abs", "", ".hidden", None])
def test_run_name_is_one_path_component(name):
    from tlkit.errors import RunDirError
    from tlkit.finetune.rundir import check_run_name

    with pytest.raises(RunDirError, match="one folder name"):
        check_run_name(name)


def test_run_name_accepts_ordinary_names_and_the_config_default(tmp_path):
    from tlkit.finetune.rundir import check_run_name

    assert check_run_name("my-run_2.b") == "my-run_2.b"
    cfg = FinetuneConfig(data="./some/folder/", base="cifar_example", runs_dir=str(tmp_path))
    assert cfg.run_dir() == tmp_path / "cifar_example-folder"
    with pytest.raises(FileExistsError, match="'..'"):
        FinetuneConfig(data="x", name="..", runs_dir=str(tmp_path)).run_dir()


def test_lock_refuses_a_second_owner_and_takes_over_a_dead_ones(tmp_path):
    from tlkit.errors import RunDirError
    from tlkit.finetune.runlock import RunLock

    path = tmp_path / ".tlkit.lock"
    first = RunLock(path)
    assert first.acquire() is None
    assert RunLock(path).holder()["pid"] == os.getpid()
    with pytest.raises(RunDirError, match=f"PID {os.getpid()}"):
        RunLock(path).acquire()  # flock is per open file: a second acquire conflicts, even here
    first.release()
    assert not path.exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": "vm"}))  # left by a killed process
    assert RunLock(path).holder() is None
    second = RunLock(path)
    assert second.acquire() == {"pid": int(dead.stdout), "host": "vm"}
    second.release()


def test_replace_puts_the_old_run_back_unless_a_checkpoint_was_written(tmp_path):
    from tlkit.errors import AlreadyExistsError, RunDirError
    from tlkit.finetune.rundir import RunDir

    run = RunDir(_fake_run(tmp_path / "runs" / "r"))
    before = _files(tmp_path)
    with pytest.raises(AlreadyExistsError, match="--force"):
        run.plan(resume=False, force=False)
    assert run.plan(resume=False, force=True) == "replace"
    run.acquire("replace")
    assert run.backup_path.is_dir() and run.path.is_dir() and run.user_entries() == []
    with pytest.raises(RunDirError, match="in use"):
        RunDir(run.path).plan(resume=True, force=False)
    (run.path / "config.json").write_text("{}")
    (run.path / ".last.tmp.keras").write_bytes(b"half")
    run.close()  # no checkpoint: the old run comes back, byte for byte
    assert _files(tmp_path) == before
    run = RunDir(run.path)
    run.acquire(run.plan(resume=False, force=True))
    (run.path / "last.keras").write_bytes(b"new checkpoint")
    run.commit()
    assert not run.backup_path.exists()
    run.close()
    assert _files(tmp_path) == {"runs/r/last.keras": b"new checkpoint"}


def test_a_replacement_left_by_a_killed_process_is_finished_by_the_next_command(tmp_path):
    from tlkit.finetune.rundir import RunDir

    runs = tmp_path / "runs"
    _fake_run(runs / ".r.tlkit-replaced")  # the old run, moved aside
    (runs / ".r.tlkit-replaced" / ".tlkit.lock").write_text('{"pid": 999999999, "host": "vm"}')
    _fake_run(runs / "r", started=False)  # the new one, killed before its first checkpoint
    run = RunDir(runs / "r")
    assert run.plan(resume=True, force=False) == "resume"
    assert (run.path / "last.keras").read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in runs.iterdir()) == ["r"]
    assert not (run.path / ".tlkit.lock").exists()


def test_an_empty_folder_may_be_used_and_a_user_folder_is_never_replaced(tmp_path):
    from tlkit.errors import RunDirError
    from tlkit.finetune.rundir import RunDir

    (tmp_path / "empty").mkdir()
    assert RunDir(tmp_path / "empty").plan(resume=False, force=False) == "create"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(RunDirError, match="not a tlkit run.*thesis.tex"):
        RunDir(tmp_path / "mine").plan(resume=False, force=True)
    # A run that failed before its first epoch does not block the next attempt.
    assert RunDir(_fake_run(tmp_path / "unstarted", started=False)).plan(resume=False, force=False) == "replace"
