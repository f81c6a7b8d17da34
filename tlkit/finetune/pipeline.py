"""The whole flow in one place: data -> preflight -> model -> staged training -> evaluation -> run directory.

A run directory ``runs/NAME/`` holds: ``config.json`` (resolved), ``labels.json``,
``data_report.json`` / ``data_report.txt`` / ``skipped.csv`` (bad files left out and why),
``history.csv``, ``best.keras`` and ``last.keras``, ``metrics.json``, ``curves.png``,
``confusion.png``, ``train.log``, ``state.json`` (for ``--resume``) and, with ``--tensorboard``,
``tensorboard/``; :class:`tlkit.finetune.rundir.RunDir` owns it. Order of work: cheap checks (flags,
run name, run directory, saved config), then
everything else that can fail (data, preflight, model, weights, checkpoint to resume), and
only then the run directory is locked, created or replaced. The stages themselves (training,
the stage switch, evaluation) run in :mod:`tlkit.finetune.stages`.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import tlkit
from tlkit._signals import interrupts_noted
from tlkit.distribute import (
    chief_by_tf_config,
    create_strategy,
    input_shard,
    is_chief,
)
from tlkit.errors import ConfigError, DataError, RunDirError
from tlkit.finetune import run_files
from tlkit.finetune import rundir as rd
from tlkit.finetune.config import RUNS_DIR, FinetuneConfig, check_config, same_data, shown_run  # noqa: F401  (public here too)
from tlkit.finetune.rundir import RunDir
from tlkit.finetune.runlock import RunLock
from tlkit.finetune.runlog import Log
from tlkit.storage.remote import is_remote


def _setup_numerics(cfg: FinetuneConfig, log: Log) -> Callable[[], None]:
    """Seed, op determinism and dtype policy for this run; returns the function that puts back
    what the caller had (a library call leaves no process-wide setting behind)."""
    import random

    import keras
    import numpy as np
    import tensorflow as tf

    from tlkit import _keras_compat

    policy, determinism = keras.mixed_precision.global_policy(), _keras_compat.op_determinism()
    py_state, np_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(cfg.seed)
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.deterministic and not gpus:
        # Bit-reproducible CPU runs (same seed, same data -> same metrics) at little cost.
        tf.config.experimental.enable_op_determinism()
    use_mp = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    log(f"devices: {len(gpus)} GPU(s); mixed precision {'on' if use_mp else 'off'}")

    def restore() -> None:
        keras.mixed_precision.set_global_policy(policy)
        if _keras_compat.op_determinism() != determinism:
            _keras_compat.set_op_determinism(determinism)
        random.setstate(py_state)
        np.random.set_state(np_state)

    return restore


def resolve_data(cfg: FinetuneConfig) -> Any:
    """The run's :class:`~tlkit.data.sources.DataSource` (no image opened; a bad source is a DataError)."""
    from tlkit.data import pipeline as tldata

    return tldata.resolve(
        cfg.data,
        val_split=cfg.val_split,
        seed=cfg.seed,
        tfds_data_dir=cfg.tfds_data_dir,
        cache_dir=cfg.cache_dir,
        multi_label=cfg.multi_label,
    )


def load_data(cfg: FinetuneConfig, log: Log) -> tuple[Any, Any]:
    """Resolve the source and run the preflight; returns (source with bad files removed, report).

    Nothing is written: the run directory gets the report only once everything that can
    fail has been checked (:func:`_write_data_report`)."""
    from tlkit.data import preflight

    source = resolve_data(cfg)
    report = preflight.check(source, progress=sys.stderr.isatty(), sample=cfg.check_sample or None, seed=cfg.seed)
    # The leak policy sets the counts the run uses, so it comes before the report is written and printed
    # (its message is the report text's last line).
    items, _ = preflight.apply_leak_policy(report, cfg.leaks)
    log(report.to_text())
    if source.kind == "files":
        source = dataclasses.replace(source, items=items)
    return source, report


def _prepare(
    cfg: FinetuneConfig, resume: bool, force: bool, must_match: Iterable[str]
) -> tuple[FinetuneConfig, RunDir, str]:
    """Checks that cost nothing (no TensorFlow, no data, no writes): flags, run name, the run
    directory and, on resume, the saved config. Returns (config to run, run dir, plan); the plan
    of a non-chief worker is "worker" (it reads the run directory to resume, never writes it)."""
    if resume and force:
        raise ConfigError("--resume continues a run and --force replaces it: pass one of them")
    cfg = dataclasses.replace(cfg)  # defaults get filled in: the caller's config stays as it was
    check_config(cfg)
    if is_remote(cfg.runs_dir):
        from tlkit.finetune.store_runs import check_store_config

        check_store_config(cfg)
    run = RunDir(cfg.run_dir())
    chief = cfg.distribute != "multi-worker" or chief_by_tf_config()
    plan = run.plan(resume=resume, force=force) if chief else "worker"
    if resume:
        if not run.is_run():  # the chief's plan says so already; a worker checks here
            raise RunDirError(
                f"cannot resume {run.path}: no tlkit run there (no config.json with its data and "
                f"base); start the run without --resume"
            )
        saved = run.read_config()
        if saved.get("task") == "segmentation":
            raise RunDirError(f"cannot resume {run.path} with tlkit finetune: it is a segmentation run (tlkit segment)")
        run_files.check_saved_config(run.path, saved, cfg, must_match)
        saved["input_size"] = tuple(saved["input_size"]) if saved.get("input_size") else None
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        # The saved config, where the run is now (the runs folder may have moved).
        # --distribute is how this command runs, not what the run is: it comes from the command line.
        cfg = FinetuneConfig(
            **{
                **{k: v for k, v in saved.items() if k in known},
                "runs_dir": cfg.runs_dir,
                "name": run.path.name,
                "distribute": cfg.distribute,
                # Logging never switches off on resume; --tensorboard switches it on from the resumed epoch.
                "tensorboard": bool(saved.get("tensorboard")) or cfg.tensorboard,
            }
        )
        check_config(cfg)
        state = run.read_state()
        if state.get("done"):
            plan = "done"
        else:
            run_files.check_resumable(run.path, state)
    return cfg, run, plan


def check_before_start(
    cfg: FinetuneConfig, *, resume: bool = False, force: bool = False, must_match: Iterable[str] = ("data", "base")
) -> FinetuneConfig:
    """The checks that cost nothing (flags, run name, run directory, a resume's saved config), for a
    launcher to run before it starts workers; returns the config the run would use."""
    return _prepare(cfg, resume, force, tuple(must_match))[0]


def _write_data_report(run: RunDir, report: Any) -> None:
    run.write_json(rd.DATA_REPORT_JSON, report.to_dict())
    run.write_text(rd.DATA_REPORT_TXT, report.to_text())
    report.write_skipped_csv(run / rd.SKIPPED)


def _record_interruption(run: RunDir, log: Log) -> None:
    """train.log's line for a SIGINT or SIGTERM: what is kept and how to go on."""
    from tlkit import _signals

    try:
        done = int(run.read_state().get("next_epoch", 0))
    except (OSError, ValueError):
        done = 0
    log.record(
        f"interrupted by {_signals.interrupting_name()} after {done} finished epoch(s); "
        + ("they are kept: continue with --resume" if done else "no epoch finished, so none is kept")
    )


def finetune(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    callbacks: Iterable[Any] = (),
    must_match: Iterable[str] = ("data", "base"),
    break_lock: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a staged finetuning; returns the final metrics. See the module docstring.

    ``must_match``: on ``resume``, the fields of ``cfg`` that must equal the saved run's
    (the CLI leaves out ``base`` when ``--base`` was not given); the others come from the run.
    A ``runs_dir`` on an object store (gs://, s3://) trains in a local staging copy published to
    the store (:mod:`tlkit.finetune.store_runs`); ``break_lock`` deletes its lock left by another host.
    """
    if is_remote(cfg.runs_dir):
        from tlkit.finetune.store_runs import finetune_on_store

        return finetune_on_store(
            _finetune_local,
            cfg,
            break_lock=break_lock,
            quiet=quiet,
            resume=resume,
            force=force,
            callbacks=callbacks,
            must_match=must_match,
        )
    return _finetune_local(cfg, resume=resume, force=force, quiet=quiet, callbacks=callbacks, must_match=must_match)


def _finetune_local(
    cfg: FinetuneConfig,
    *,
    resume: bool,
    force: bool,
    quiet: bool,
    callbacks: Iterable[Any],
    must_match: Iterable[str],
) -> dict[str, Any]:
    """:func:`finetune` in the run directory ``cfg.run_dir()`` (local, or a store run's staging copy)."""
    cfg, run, plan = _prepare(cfg, resume, force, tuple(must_match))
    if plan == "done":
        if not quiet:
            print(f"{shown_run(cfg, run.path)} is complete; nothing to resume", flush=True)
        return run.read_json(rd.METRICS, {})
    log = Log(quiet=quiet)
    spec = tlkit.get_spec(cfg.base)
    if cfg.input_size is None:
        cfg.input_size = tuple(spec.input_shape[:2])  # type: ignore[assignment]
    if cfg.finetune_lr is None:
        cfg.finetune_lr = cfg.lr / 10
    # The data first: a typo or a broken folder fails in a second, before TensorFlow starts.
    source, report = load_data(cfg, log)
    classes = list(source.classes)
    multi_label = bool(getattr(source, "multi_label", False))  # tlkit.finetune.multilabel
    if multi_label and cfg.class_weight == "auto":
        raise ConfigError("--class-weight auto weighs one class per image; a multi-label run has several: leave it out")
    state = run.read_state() if resume else {}
    if resume and run.read_labels() not in (None, classes):
        raise DataError(
            f"--resume: {run.path} was trained on classes {run.read_labels()}, the data now has "
            f"{classes}; resume with the run's data, or start a new run with another --name"
        )

    from tlkit.data import pipeline as tldata

    # Imports Keras (and TensorFlow): only once a run really starts.
    from tlkit.data.mixing import Mixing
    from tlkit.finetune import config, heads, losses, recorder, train
    from tlkit.finetune.stages import TrainingJob, train_and_finish

    # Before TensorFlow runs any op: collective ops are configured at program start-up.
    strategy = create_strategy(cfg.distribute)
    restore_numerics = _setup_numerics(cfg, log)
    try:
        size = tuple(cfg.input_size)
        channels = spec.input_shape[-1]
        # The epoch the training pipeline shuffles and augments for, set as each epoch begins:
        # a resumed epoch replays what an uninterrupted run trains on.
        data_epoch = tldata.epoch_variable()
        # Multi-worker on files or prepared records: each worker reads and decodes only its share
        # (tlkit.data.sharding); TFDS datasets are read whole by every worker.
        shard = input_shard(strategy) if source.kind in ("files", "records") else None
        # --label-smoothing/--mixup/--cutmix: one-hot float labels, training batches mixed (tlkit.data.mixing).
        soft = losses.soft_labels(cfg.label_smoothing, cfg.mixup, cfg.cutmix)
        labels: dict[str, Any] = {"label_classes": len(classes)} if soft else {}
        train_ds = tldata.make_dataset(
            source,
            "train",
            image_size=size,
            batch_size=cfg.batch_size,
            training=True,
            augment=cfg.augment,
            seed=cfg.seed,
            flip=cfg.flip,
            channels=channels,
            skip_undecodable=bool(cfg.check_sample),
            cache=cfg.cache or False,
            cache_budget=cfg.cache_budget,
            epoch=data_epoch,
            shard=shard,
            randaugment=config.parse_randaugment(cfg.randaugment),
            mixing=Mixing(cfg.mixup, cfg.cutmix, cfg.seed),
            **labels,
        )
        if cfg.randaugment:
            flip = "on" if cfg.flip else "off"
            log(f"augmentation: {cfg.augment}, flip {flip}, RandAugment {cfg.randaugment} (N,M) for colour jitter")
        has_val = tldata.dataset_size(source, "val") > 0
        val_ds = (
            tldata.make_dataset(
                source,
                "val",
                image_size=size,
                batch_size=cfg.batch_size,
                training=False,
                channels=channels,
                skip_undecodable=bool(cfg.check_sample),
                cache=cfg.cache or False,
                cache_budget=cfg.cache_budget,
                shard=shard,
                **labels,
            )
            if has_val
            else None
        )
        class_weight = None
        if cfg.class_weight == "auto":
            counts = report.class_counts.get("train", {})
            class_weight = tldata.class_weights([counts.get(c, 0) for c in classes])
            log("class weights: " + ", ".join(f"{c}={class_weight[i]:.2f}" for i, c in enumerate(classes)))

        stage1 = train.StageConfig(
            stage=1,
            epochs=cfg.epochs,
            lr=cfg.lr,
            optimizer=cfg.optimizer,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            schedule=cfg.schedule,
            step_epochs=cfg.step_epochs,
            early_stopping=cfg.early_stopping,
            ema=cfg.ema,
            multi_label=multi_label,
            label_smoothing=cfg.label_smoothing,
            soft_labels=soft,
        )
        stage2 = dataclasses.replace(stage1, stage=2, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
        log(f"distribution: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s) in sync")
        # A kill before the first state.json leaves no epoch to resume from: start over.
        if not (state and any((run / n).exists() for n in rd.CHECKPOINTS)):
            state = {}
        resumed_from = rd.LAST
        recorded_state = state  # what state.json says; a fallback to best.keras resumes from an earlier epoch
        with strategy.scope():
            if state:
                # Verified before any training: last.keras, else best.keras (saying so).
                model, state, resumed_from = run_files.load_resume_checkpoint(
                    run.path, state, run.load_checkpoint, log.warn
                )
            else:
                model = heads.build_classifier(
                    cfg.base,
                    num_classes=len(classes),
                    weights=cfg.weights,
                    input_size=size,
                    dropout=cfg.dropout,
                    hidden_units=cfg.hidden_units,
                    multi_label=multi_label,
                )
                train.compile_model(model, stage1, len(classes))
                # Slots built now: a checkpoint saved before the optimizer's first step (cached features
                # train another model) still loads whole.
                model.optimizer.build(model.trainable_variables)

        # Everything that can fail has been checked: only now is the run directory locked and written.
        if plan == "worker" or not is_chief(strategy):
            run = None  # a non-chief worker: saves (saving runs collective ops) where nobody reads
            write_dir = Path(tempfile.mkdtemp(prefix="tlkit-worker-"))
            if state:  # resuming: the worker follows the chief's stage and epoch
                recorder.write_state(write_dir, state)
        else:
            run.acquire(plan)
            write_dir = run.path
        try:
            if run is not None:
                log.attach(run / rd.LOG)
                if run.took_over:
                    log(f"took over the lock of {RunLock.describe(run.took_over)}, which is no longer running")
                if state and run.read_state() != recorded_state:
                    raise RunDirError(
                        f"{run.path} changed while this resume was starting (another tlkit process?); "
                        f"run the command again"
                    )
                run.write_json(
                    rd.CONFIG, {**asdict(cfg), "multi_label": multi_label, "tlkit_version": tlkit.__version__}
                )
                run.write_json(rd.LABELS, classes)
                _write_data_report(run, report)
                if state is not recorded_state:
                    run.write_state(state)  # the epoch best.keras holds: training goes on from there
                if state:
                    log(f"resumed from {run / resumed_from} at epoch {state.get('next_epoch')}")
            job = TrainingJob(
                cfg,
                run,
                write_dir,
                model,
                strategy,
                stage1,
                stage2,
                train_ds,
                val_ds,
                source,
                classes,
                size,
                channels,
                class_weight,
                log,
                data_epoch,
                shard,
            )
            try:
                with interrupts_noted() as interrupted:
                    stop_check = train.StopOnInterrupt(interrupted)
                    metrics = train_and_finish(
                        job, state, resume=resume, callbacks=[stop_check, *callbacks], quiet=quiet
                    )
            except KeyboardInterrupt:
                if run is not None:
                    _record_interruption(run, log)
                raise
        finally:
            if run is not None:
                run.close()  # interrupted before the first checkpoint: a replaced run is put back
            else:
                shutil.rmtree(write_dir, ignore_errors=True)
        return metrics
    finally:
        restore_numerics()  # the caller's dtype policy, op determinism and random state, as they were
