"""The whole flow in one place: data -> preflight -> model -> staged training -> evaluation -> run directory.

A run directory ``runs/NAME/`` holds: ``config.json`` (resolved), ``labels.json``,
``data_report.json`` / ``data_report.txt`` / ``skipped.csv`` (bad files left out and why),
``history.csv``, ``best.keras`` and ``last.keras``, ``metrics.json``, ``curves.png``,
``confusion.png``, ``train.log`` and ``state.json`` (for ``--resume``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import tlkit
from tlkit.errors import AlreadyExistsError, ConfigError, NotFoundError
from tlkit.fsutil import write_json_atomic

RUNS_DIR = Path("runs")


@dataclass
class FinetuneConfig:
    """Everything that defines a finetuning run; written to ``config.json``."""

    data: str
    base: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    name: str | None = None
    runs_dir: str = str(RUNS_DIR)
    input_size: tuple[int, int] | None = None
    batch_size: int = 32
    epochs: int = 5  # stage 1: head only
    finetune_epochs: int = 5  # stage 2: top blocks unfrozen
    unfreeze: str = "2"  # number of top blocks, or "all"; "0" = head only
    lr: float = 1e-3
    finetune_lr: float | None = None  # default: lr / 10
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    step_epochs: int = 10
    early_stopping: int = 0
    dropout: float = 0.2
    hidden_units: int = 0
    augment: str | None = "crop"  # "crop" | "scale" | None
    flip: bool = True  # horizontal flips; off for digits, text and other handed data
    val_split: float = 0.2
    seed: int = 0
    class_weight: str | None = None  # "auto" derives weights from class counts
    train_batchnorm: bool = False
    find_lr: bool = False
    distribute: str | None = None  # None | "mirrored" | "multi-worker"
    mixed_precision: str = "auto"  # "auto" (on for GPUs) | "on" | "off"
    tfds_data_dir: str | None = None
    cache_dir: str | None = None
    deterministic: bool = True
    cache_features: bool = False  # stage 1 on the frozen base's features, computed once
    leaks: str = "drop"  # validation/test copies of training files: "drop" | "keep" | "fail" (preflight)

    def run_dir(self) -> Path:
        name = self.name or f"{self.base}-{_slug(self.data)}"
        return Path(self.runs_dir) / name


def _slug(data: str) -> str:
    tail = data.rstrip("/").replace(":", "-").split("/")[-1] or "data"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)


class Log:
    """Prints to the console and appends to the run's ``train.log``."""

    def __init__(self, path: Path | None, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {msg}\n")


def prepare_run_dir(cfg: FinetuneConfig, *, resume: bool, force: bool) -> Path:
    """Create the run directory; an existing one needs ``resume`` (continue) or ``force`` (replace)."""
    run_dir = cfg.run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            return run_dir
        if not force:
            raise AlreadyExistsError(
                f"run directory {run_dir} already exists; pass --resume to continue it, --force to replace "
                f"it, or --name for a new run")
        shutil.rmtree(run_dir)
    elif resume:
        raise NotFoundError(f"nothing to resume: {run_dir} does not exist")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _strategy(kind: str | None) -> Any:
    import tensorflow as tf

    if kind in (None, "none"):
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi-worker":
        # Workers and ranks come from TF_CONFIG, as tf.distribute expects.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown --distribute {kind!r}; use mirrored or multi-worker")


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run directory: always, except for the non-chief
    workers of a multi-worker strategy (the chief, or worker 0 when there is no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() if resolver is not None else {})
    return task_type == "worker" and int(resolver.task_id or 0) == 0 and not has_chief


def _setup_numerics(cfg: FinetuneConfig, log: Log) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.deterministic and not gpus:
        # Bit-reproducible CPU runs (same seed, same data -> same metrics) at little cost.
        tf.config.experimental.enable_op_determinism()
    use_mp = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    log(f"devices: {len(gpus)} GPU(s); mixed precision {'on' if use_mp else 'off'}")


def load_data(cfg: FinetuneConfig, log: Log, run_dir: Path | None) -> tuple[Any, Any]:
    """Resolve the source and run the preflight; returns (source with bad files removed, report)."""
    from tlkit import data as tldata
    from tlkit import preflight

    source = tldata.resolve(cfg.data, val_split=cfg.val_split, seed=cfg.seed,
                            tfds_data_dir=cfg.tfds_data_dir, cache_dir=cfg.cache_dir)
    report = preflight.check(source, progress=sys.stderr.isatty())
    # The leak policy sets the counts the run uses, so it comes before the report is written and printed
    # (its message is the report text's last line).
    items, _ = preflight.apply_leak_policy(report, cfg.leaks)
    if run_dir is not None:
        write_json_atomic(run_dir / "data_report.json", report.to_dict())
        (run_dir / "data_report.txt").write_text(report.to_text())
        report.write_skipped_csv(run_dir / "skipped.csv")
    log(report.to_text())
    if source.kind == "files":
        source = dataclasses.replace(source, items=items)
    return source, report


def finetune(cfg: FinetuneConfig, *, resume: bool = False, force: bool = False, quiet: bool = False,
             callbacks: Iterable[Any] = ()) -> dict[str, Any]:
    """Run (or resume) a staged finetuning; returns the final metrics. See the module docstring."""
    tlkit.get_spec(cfg.base)  # unknown base: fail before touching the disk
    if cfg.unfreeze != "all" and not str(cfg.unfreeze).isdigit():
        raise ConfigError(f"--unfreeze must be a number of blocks or 'all', got {cfg.unfreeze!r}")
    run_dir = prepare_run_dir(cfg, resume=resume, force=force)
    log = Log(run_dir / "train.log", quiet=quiet)
    from tlkit import (
        train,  # imports Keras (and TensorFlow): only once a run really starts
    )

    state = train.read_state(run_dir) if resume else {}
    if resume:
        saved = json.loads((run_dir / "config.json").read_text())
        saved["input_size"] = tuple(saved["input_size"]) if saved.get("input_size") else None
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        cfg = FinetuneConfig(**{k: v for k, v in saved.items() if k in known})
        if state.get("done"):
            log(f"{run_dir} is complete; nothing to resume")
            return json.loads((run_dir / "metrics.json").read_text())
    spec = tlkit.get_spec(cfg.base)
    if cfg.input_size is None:
        cfg.input_size = tuple(spec.input_shape[:2])  # type: ignore[assignment]
    if cfg.finetune_lr is None:
        cfg.finetune_lr = cfg.lr / 10
    write_json_atomic(run_dir / "config.json", {**asdict(cfg), "tlkit_version": tlkit.__version__})

    import keras

    from tlkit import data as tldata
    from tlkit import heads

    _setup_numerics(cfg, log)
    source, report = load_data(cfg, log, run_dir)
    classes = list(source.classes)
    write_json_atomic(run_dir / "labels.json", classes)
    size = tuple(cfg.input_size)
    channels = spec.input_shape[-1]
    train_ds = tldata.make_dataset(source, "train", image_size=size, batch_size=cfg.batch_size, training=True,
                                   augment=cfg.augment, seed=cfg.seed, flip=cfg.flip, channels=channels)
    has_val = tldata.dataset_size(source, "val") > 0
    val_ds = (tldata.make_dataset(source, "val", image_size=size, batch_size=cfg.batch_size, training=False,
                                  channels=channels) if has_val else None)
    class_weight = None
    if cfg.class_weight == "auto":
        counts = report.class_counts.get("train", {})
        class_weight = tldata.class_weights([counts.get(c, 0) for c in classes])
        log("class weights: " + ", ".join(f"{c}={class_weight[i]:.2f}" for i, c in enumerate(classes)))
    elif cfg.class_weight not in (None, "none"):
        raise ConfigError(f"--class-weight must be 'auto' or 'none', got {cfg.class_weight!r}")

    stage1 = train.StageConfig(stage=1, epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                               step_epochs=cfg.step_epochs, early_stopping=cfg.early_stopping)
    stage2 = dataclasses.replace(stage1, stage=2, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
    strategy = _strategy(cfg.distribute)
    log(f"distribution: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s) in sync")
    # Every worker saves (saving runs collective ops), but only the chief into the run directory.
    write_dir = run_dir if is_chief(strategy) else Path(tempfile.mkdtemp(prefix="tlkit-worker-"))
    with strategy.scope():
        if resume and (run_dir / "last.keras").exists():
            model = keras.saving.load_model(run_dir / "last.keras")
            log(f"resumed from {run_dir / 'last.keras'} at epoch {state.get('next_epoch')}")
        else:
            state = {}
            model = heads.build_classifier(cfg.base, num_classes=len(classes), weights=cfg.weights,
                                           input_size=size, dropout=cfg.dropout, hidden_units=cfg.hidden_units)
            train.compile_model(model, stage1, len(classes))
    if cfg.find_lr and not state:
        with strategy.scope():
            found = train.lr_range_test(model, train_ds, optimizer=cfg.optimizer, num_classes=len(classes))
            train.compile_model(model, stage1, len(classes))
        from tlkit import plots

        plots.line_plot(found["lr"], found["loss"], run_dir / "lr_find.png", xlabel="learning rate",
                        ylabel="loss (smoothed)", title="LR range test", logx=True, mark_x=found["suggested_lr"])
        log(f"LR range test: suggested learning rate {found['suggested_lr']:.2g} (plot: {run_dir / 'lr_find.png'})")
        stage1.lr = found["suggested_lr"]
        stage2.lr = found["suggested_lr"] / 10
        with strategy.scope():
            train.compile_model(model, stage1, len(classes))
        write_json_atomic(run_dir / "config.json", {**asdict(cfg), "lr": stage1.lr, "finetune_lr": stage2.lr,
                                              "tlkit_version": tlkit.__version__})
    if state:
        train.truncate_history(run_dir / "history.csv", int(state["next_epoch"]))
    next_epoch = int(state.get("next_epoch", 0))
    best = state.get("best")
    stage = int(state.get("stage", 1))
    n = len(classes)
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)

    if stage == 1:
        log(f"stage 1: head only, {cfg.epochs} epochs at lr {stage1.lr:g} ({cfg.optimizer})"
            + ("; on cached base features (no augmentation)" if cfg.cache_features else ""))
        if cfg.cache_features:
            with strategy.scope():
                head, cached_train, cached_val = _cached_head_data(model, source, size, cfg, channels, log)
                train.compile_model(head, stage1, n)
            next_epoch = train.fit_stage(head, cached_train, cached_val, stage1, run_dir=write_dir,
                                         initial_epoch=next_epoch, stage_start=0, best=best,
                                         class_weight=class_weight, extra_callbacks=callbacks, verbose=verbose,
                                         checkpoint_model=model, batch_size=cfg.batch_size)
        else:
            next_epoch = train.fit_stage(model, train_ds, val_ds, stage1, run_dir=write_dir, initial_epoch=next_epoch,
                                         stage_start=0, best=best, class_weight=class_weight,
                                         extra_callbacks=callbacks, verbose=verbose)
        best = train.read_state(write_dir).get("best", best)
        stage1_end = next_epoch
        unfrozen: list[str] = []
        if cfg.finetune_epochs > 0 and cfg.unfreeze != "0":
            with strategy.scope():
                unfrozen = heads.unfreeze_top(model, cfg.unfreeze, train_batchnorm=cfg.train_batchnorm)
                train.compile_model(model, stage2, n)
        if unfrozen:
            # The recompiled model (new trainable set, fresh optimizer) is what a resume must load;
            # saved before the state that says "stage 2", so a kill in between resumes stage 1's end.
            train.save_checkpoint(model, write_dir / "last.keras")
        train.write_state(write_dir, {"stage": 2, "next_epoch": next_epoch, "stage_start": stage1_end,
                                    "best": best, "unfrozen": unfrozen})
    state = train.read_state(write_dir)
    stage_start = int(state.get("stage_start", next_epoch))
    unfrozen = state.get("unfrozen", [])
    if unfrozen:
        log(f"stage 2: unfroze {len(unfrozen)} block(s) ({', '.join(unfrozen)}), {cfg.finetune_epochs} epochs "
            f"at lr {stage2.lr:g}; BatchNorm {'trained' if cfg.train_batchnorm else 'frozen, inference mode'}")
        train.fit_stage(model, train_ds, val_ds, stage2, run_dir=write_dir,
                        initial_epoch=int(state.get("next_epoch", stage_start)), stage_start=stage_start,
                        best=state.get("best"), class_weight=class_weight, extra_callbacks=callbacks,
                        verbose=verbose, extra_state={"unfrozen": unfrozen})
    if write_dir != run_dir:
        shutil.rmtree(write_dir, ignore_errors=True)
        return {"worker": "not the chief: the chief evaluates and writes the run directory"}
    metrics = _finish(run_dir, source, classes, size, cfg, log)
    st = train.read_state(run_dir)
    train.write_state(run_dir, {**st, "done": True})
    return metrics


def _cached_head_data(model: Any, source: Any, size: tuple, cfg: FinetuneConfig, channels: int,
                      log: Log) -> tuple[Any, tuple, tuple | None]:
    """The head as its own model (sharing the full model's layers) and the frozen base's
    pooled features for train and val, computed once: stage 1 then costs a few matrix
    products per epoch instead of a forward pass through the base."""
    import keras
    import numpy as np

    from tlkit import data as tldata

    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    out = {}
    for split in ("train", "val"):
        if tldata.dataset_size(source, split) == 0:
            out[split] = None
            continue
        t0 = time.time()
        ds = tldata.make_dataset(source, split, image_size=size, batch_size=cfg.batch_size, training=False,
                                 channels=channels)
        xs, ys = [], []
        for x, y in ds:
            xs.append(np.asarray(pooled.predict_on_batch(x)))
            ys.append(np.asarray(y))
        out[split] = (np.concatenate(xs), np.concatenate(ys))
        log(f"cached {split} features: {out[split][0].shape} in {time.time() - t0:.1f} s")
    names = [l.name for l in model.layers]
    head_layers = model.layers[names.index("avg_pool") + 1:]
    inputs = keras.Input(shape=(int(pooled.output_shape[-1]),), name="features")
    x = inputs
    for layer in head_layers:
        x = layer(x)
    return keras.Model(inputs, x, name="head"), out["train"], out["val"]


def _finish(run_dir: Path, source: Any, classes: list[str], size: tuple, cfg: FinetuneConfig, log: Log) -> dict:
    """Evaluate the best checkpoint on the validation split; write metrics and pictures."""
    import keras

    from tlkit import data as tldata
    from tlkit import evaluate, plots, train

    history = train.read_history(run_dir / "history.csv")
    if history:
        plots.training_curves(history, run_dir / "curves.png", title=f"{cfg.base} on {cfg.data}")
    split = "val" if tldata.dataset_size(source, "val") > 0 else "train"
    ckpt = run_dir / ("best.keras" if (run_dir / "best.keras").exists() else "last.keras")
    model = keras.saving.load_model(ckpt)
    ds = tldata.make_dataset(source, split, image_size=size, batch_size=cfg.batch_size, training=False,
                             channels=model.input_shape[-1])
    y, probs = evaluate.predict_dataset(model, ds)
    metrics = evaluate.metrics_from_probs(y, probs, classes)
    metrics.update({"split": split, "checkpoint": ckpt.name, "epochs_run": len(history)})
    write_json_atomic(run_dir / "metrics.json", metrics)
    import numpy as np

    plots.confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes, run_dir / "confusion.png")
    log(f"{split} top-1 accuracy {metrics['top1']:.4f}" +
        (f", top-5 {metrics['top5']:.4f}" if "top5" in metrics else "") + f" ({ckpt.name}); run: {run_dir}")
    return metrics
