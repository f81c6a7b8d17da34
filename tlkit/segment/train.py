"""``tlkit segment finetune``: a segmenter trained in tlkit's run directories, staged and resumable.

The flow is :func:`tlkit.finetune.pipeline.finetune`'s, with segmentation's data, model, loss and
evaluation: cheap checks (flags, run name, run directory, a resume's saved config and damaged
files), then the pairs are found and checked (:mod:`tlkit.segment.sources`), the model is built or
the checkpoint loaded, and only then is the run directory locked and written
(:class:`tlkit.finetune.rundir.RunDir`). The stages are tlkit's own
(:func:`tlkit.finetune.stages.train_and_finish`): stage 1 trains the decoder with the base frozen,
stage 2 unfreezes the base's top blocks; checkpoints, ``history.csv``, ``state.json``, the
epoch-keyed randomness that makes ``--resume`` bit-exact and the interrupt handling come with them.

Loss: sparse categorical cross-entropy from the logits, label 255 ignored (the mean over the
labelled pixels). Metric: mean IoU over the epoch (``val_mean_iou`` in ``history.csv``), which
chooses ``best.keras``. The finished run is evaluated by :func:`tlkit.segment.evaluate.finish`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import tlkit
from tlkit._signals import interrupts_noted
from tlkit.errors import ConfigError, DataError, RunDirError
from tlkit.finetune import run_files
from tlkit.finetune import rundir as rd
from tlkit.finetune.rundir import RunDir
from tlkit.finetune.runlog import Log
from tlkit.segment.config import SegmentConfig, check_config, default_input_size

IGNORE = 255  # tlkit.segment.masks.IGNORE: never scored, no loss


def prepare(
    cfg: SegmentConfig, *, resume: bool, force: bool, must_match: Iterable[str] = ("data",)
) -> tuple[SegmentConfig, RunDir, str]:
    """The checks that cost nothing (no TensorFlow, no data, no writes); returns (config, run, plan).

    On ``resume`` the config is the run's own (``config.json``) with ``runs_dir`` and ``name`` as
    given; ``must_match`` fields must equal the saved ones. The plan is ``"done"`` for a finished run.
    """
    if resume and force:
        raise ConfigError("--resume continues a run and --force replaces it: pass one of them")
    cfg = dataclasses.replace(cfg)
    check_config(cfg)
    run = RunDir(cfg.run_dir())
    plan = run.plan(resume=resume, force=force)
    if not resume:
        return cfg, run, plan
    saved = run.read_config()
    if saved.get("task") != SegmentConfig.task:
        raise RunDirError(f"cannot resume {run.path} with tlkit segment: it is a classification run (tlkit finetune)")
    run_files.check_saved_config(run.path, saved, cfg, must_match)
    saved["input_size"] = tuple(saved["input_size"]) if saved.get("input_size") else None
    known = {f.name for f in dataclasses.fields(SegmentConfig)}
    cfg = SegmentConfig(**{**{k: v for k, v in saved.items() if k in known}, "runs_dir": cfg.runs_dir})
    cfg.name = run.path.name
    check_config(cfg)
    state = run.read_state()
    if state.get("done"):
        return cfg, run, "done"
    run_files.check_resumable(run.path, state)
    return cfg, run, plan


def compile_segmenter(model: Any, stage: Any, num_classes: int) -> None:
    """Loss and metric of a segmenter (logits out); recompiled when stage 2 changes the trainable set.

    ``ignore_class=255``: Keras gives those pixels no loss and averages over the others (checked in
    tests/test_segment_train.py); the metric is :func:`tlkit.segment.keras_metrics.mean_iou_metric`
    (Keras' MeanIoU, checked against :mod:`tlkit.segment.metrics`).
    """
    import keras

    from tlkit.finetune.train import make_optimizer
    from tlkit.segment.keras_metrics import mean_iou_metric

    model.compile(
        optimizer=make_optimizer(stage),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE),
        metrics=[mean_iou_metric(num_classes)],
    )


def _report_dict(report: Any) -> Any:
    """The data check's report as JSON (its ``to_dict`` when it has one)."""
    if hasattr(report, "to_dict"):
        return report.to_dict()
    return asdict(report) if dataclasses.is_dataclass(report) else {"report": str(report)}


def finetune_segmenter(
    cfg: SegmentConfig,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    callbacks: Iterable[Any] = (),
    must_match: Iterable[str] = ("data",),
) -> dict[str, Any]:
    """Run (or resume) a segmentation finetuning; returns the final metrics (``metrics.json``)."""
    cfg, run, plan = prepare(cfg, resume=resume, force=force, must_match=tuple(must_match))
    if plan == "done":
        if not quiet:
            print(f"{run.path} is complete; nothing to resume", flush=True)
        return run.read_json(rd.METRICS, {})
    log = Log(quiet=quiet)
    if cfg.input_size is None:
        cfg.input_size = default_input_size(cfg.base)
    if cfg.finetune_lr is None:
        cfg.finetune_lr = cfg.lr / 10
    # The data first: a typo or a broken folder fails before TensorFlow starts.
    from tlkit.segment.sources import check_pairs, find_pairs

    source = find_pairs(cfg.data, val_split=cfg.val_split, seed=cfg.seed)
    if not source.train:
        raise DataError(f"--data {cfg.data}: no training pairs found (images/ with masks/ of the same stems)")
    report = check_pairs(source)
    classes = list(source.classes)
    if len(classes) < 2:
        raise DataError(f"--data {cfg.data}: {len(classes)} class(es); segmentation needs a background and one more")
    state = run.read_state() if resume else {}
    if resume and run.read_labels() not in (None, classes):
        raise DataError(
            f"--resume: {run.path} was trained on classes {run.read_labels()}, the data now has {classes}; "
            f"resume with the run's data, or start a new run with another --name"
        )
    log(
        f"data: {len(source.train)} training, {len(source.val)} validation, {len(source.test)} test pairs; "
        f"{len(classes)} classes ({', '.join(classes)})"
    )
    for line in report.lines() if hasattr(report, "lines") else ():
        log(f"  {line}")
    from tlkit.data.pipeline import epoch_variable
    from tlkit.distribute import create_strategy
    from tlkit.finetune.pipeline import _record_interruption, _setup_numerics
    from tlkit.finetune.stages import TrainingJob, train_and_finish
    from tlkit.finetune.train import StageConfig, StopOnInterrupt
    from tlkit.segment.dataset import make_segmentation_dataset
    from tlkit.segment.evaluate import finish

    strategy = create_strategy(None)
    restore_numerics = _setup_numerics(cfg, log)
    try:
        size = tuple(int(v) for v in cfg.input_size)
        data_epoch = epoch_variable()  # assigned at each epoch begin (EpochRandomness): crops keyed by it
        train_ds = make_segmentation_dataset(
            source.train,
            size=size,
            batch_size=cfg.batch_size,
            training=True,
            seed=cfg.seed,
            epoch=data_epoch,
            augment=cfg.augment,
        )
        val_ds = (
            make_segmentation_dataset(source.val, size=size, batch_size=cfg.batch_size, training=False)
            if source.val
            else None
        )
        stage1 = StageConfig(
            stage=1,
            epochs=cfg.epochs,
            lr=cfg.lr,
            optimizer=cfg.optimizer,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            score="mean_iou",
        )
        stage2 = dataclasses.replace(stage1, stage=2, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
        if not (state and any((run / n).exists() for n in rd.CHECKPOINTS)):
            state = {}  # killed before the first state.json: start over
        resumed_from = rd.LAST
        recorded_state = state
        with strategy.scope():
            if state:
                model, state, resumed_from = run_files.load_resume_checkpoint(
                    run.path, state, run.load_checkpoint, log.warn
                )
            else:
                from tlkit.segment.models import build_segmenter

                model = build_segmenter(
                    cfg.base,
                    head=cfg.head,
                    num_classes=len(classes),
                    input_size=size,
                    weights=cfg.weights,
                    output_stride=cfg.output_stride,
                )
                compile_segmenter(model, stage1, len(classes))
                model.optimizer.build(model.trainable_variables)

        # Everything that can fail has been checked: only now is the run directory locked and written.
        run.acquire(plan)
        try:
            log.attach(run / rd.LOG)
            if state and run.read_state() != recorded_state:
                raise RunDirError(f"{run.path} changed while this resume was starting (another tlkit process?)")
            run.write_json(rd.CONFIG, {**asdict(cfg), "task": SegmentConfig.task, "tlkit_version": tlkit.__version__})
            run.write_json(rd.LABELS, classes)
            run.write_json(rd.DATA_REPORT_JSON, _report_dict(report))
            if state is not recorded_state:
                run.write_state(state)
            if state:
                log(f"resumed from {run / resumed_from} at epoch {state.get('next_epoch')}")
            job = TrainingJob(
                cfg,
                run,
                run.path,
                model,
                strategy,
                stage1,
                stage2,
                train_ds,
                val_ds,
                source,
                classes,
                size,
                3,
                None,
                log,
                data_epoch,
                compile=compile_segmenter,
                finish=finish,
            )
            try:
                with interrupts_noted() as interrupted:
                    return train_and_finish(
                        job, state, resume=resume, callbacks=[StopOnInterrupt(interrupted), *callbacks], quiet=quiet
                    )
            except KeyboardInterrupt:
                _record_interruption(run, log)
                raise
        finally:
            run.close()
    finally:
        restore_numerics()
