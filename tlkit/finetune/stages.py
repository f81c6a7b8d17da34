"""The staged training of one checked and built job: stage 1 (head only, or on cached base
features), the switch that unfreezes the top blocks, stage 2, then the evaluation that writes
``metrics.json`` and the pictures (the chief only).

:func:`tlkit.finetune.pipeline.finetune` builds the :class:`TrainingJob` (data, model, strategy,
run directory) and calls :func:`train_and_finish`; a resume re-enters here at the stage and epoch
that ``state.json`` names. Imports Keras and TensorFlow: only once a run really starts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tlkit
from tlkit.distribute import is_multi_worker
from tlkit.errors import ConfigError
from tlkit.finetune import heads, lr_finder, recorder, train
from tlkit.finetune import rundir as rd
from tlkit.finetune.config import FinetuneConfig, shown_run
from tlkit.finetune.rundir import RunDir
from tlkit.finetune.runlog import Log


@dataclass
class TrainingJob:
    """What the training stages need, all checked and built before the run directory was touched."""

    cfg: FinetuneConfig
    run: RunDir | None  # None: a non-chief worker, writing to a scratch folder
    write_dir: Path
    model: Any
    strategy: Any
    stage1: Any
    stage2: Any
    train_ds: Any
    val_ds: Any
    source: Any
    classes: list[str]
    size: tuple
    channels: int
    class_weight: Any
    log: Log
    data_epoch: Any = None  # the tf.Variable the training pipeline reads its epoch from
    shard: Any = None  # multi-worker: the share of the files train_ds/val_ds hold (tlkit.data.sharding)
    # Another task's model (tlkit.segment): how stage 2 recompiles it, and what evaluates the finished run.
    compile: Any = None  # (model, stage_cfg, num_classes) -> None; default train.compile_model
    finish: Any = None  # (run, source, classes, size, cfg, log) -> metrics; default _finish


def train_and_finish(
    job: TrainingJob, state: dict, *, resume: bool, callbacks: Iterable[Any], quiet: bool
) -> dict[str, Any]:
    """Stage 1, the stage switch, stage 2, then evaluation (the chief only)."""
    cfg, run, write_dir, model, strategy = job.cfg, job.run, job.write_dir, job.model, job.strategy
    stage1, stage2, train_ds, val_ds, log = job.stage1, job.stage2, job.train_ds, job.val_ds, job.log
    source, classes, size, channels, class_weight = job.source, job.classes, job.size, job.channels, job.class_weight
    n = len(classes)
    if cfg.find_lr and not state:
        from tlkit import plots

        with strategy.scope():
            try:
                found = lr_finder.lr_range_test(
                    model,
                    train_ds,
                    optimizer=cfg.optimizer,
                    num_classes=n,
                    label_smoothing=stage1.label_smoothing,
                    soft_labels=stage1.soft_labels,
                )
            except ConfigError as err:
                if getattr(err, "curve", None) is not None and run is not None:
                    # The refused curve, for the user to look at: beside the run folder, which is
                    # discarded (or put back as it was) when this refusal ends the command.
                    plot = run.path.parent / f"{run.path.name}.{rd.LR_FIND}"
                    plots.lr_range_plot(err.curve, plot)
                    raise ConfigError(f"{err} (plot: {plot})") from None
                raise
            train.compile_model(model, stage1, n)
        plots.lr_range_plot(found, write_dir / rd.LR_FIND)
        log(f"LR range test: suggested learning rate {found['suggested_lr']:.2g} (plot: {write_dir / rd.LR_FIND})")
        stage1.lr = found["suggested_lr"]
        stage2.lr = found["suggested_lr"] / 10
        with strategy.scope():
            train.compile_model(model, stage1, n)
        if run is not None:
            run.write_json(
                rd.CONFIG,
                {**asdict(cfg), "lr": stage1.lr, "finetune_lr": stage2.lr, "multi_label": stage1.multi_label}
                | {"tlkit_version": tlkit.__version__},
            )
    next_epoch = int(state.get("next_epoch", 0))
    if resume:
        # Rows past the state are epochs whose state was never written (a kill in between).
        recorder.truncate_history(write_dir / rd.HISTORY, next_epoch)
        if run is not None and (write_dir / rd.TENSORBOARD).is_dir():
            from tlkit.finetune import tensorboard_log

            tensorboard_log.truncate(write_dir / rd.TENSORBOARD, next_epoch)  # the same epochs as history.csv
    best = state.get("best")
    stage = int(state.get("stage", 1))
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    fit = train.fit_stage
    if is_multi_worker(strategy):
        from tlkit.finetune.distributed_train import fit_stage_distributed

        def fit(m: Any, tr: Any, va: Any, stage_cfg: Any, **kw: Any) -> int:
            kw.pop("verbose", None)
            return fit_stage_distributed(
                m, tr, va, stage_cfg, strategy=strategy, num_classes=n, log=log, shard=job.shard, **kw
            )

        # After the recorder's checkpoint of each epoch: the run it replaces can go.
    extra = [recorder.EpochEndHook(run.commit), *callbacks] if run is not None else list(callbacks)
    # Shuffle, augmentation and dropout of epoch e: a function of (seed, e), so a resume replays them.
    extra.insert(0, train.EpochRandomness(job.data_epoch, cfg.seed))

    def loggers(val: Any) -> list:
        """--tensorboard's callbacks for a stage validated on ``val``: the chief's only (one writer)."""
        if not cfg.tensorboard or run is None:
            return []
        from tlkit.finetune import tensorboard_log

        # Multi-worker: the distributed loop's evaluation step hands the image its confusion matrix.
        # Multi-label: no confusion matrix (an image has several labels).
        val = None if is_multi_worker(strategy) or stage1.multi_label else val
        return tensorboard_log.callbacks(write_dir / rd.TENSORBOARD, val, classes, cfg.batch_size)

    if cfg.tensorboard and run is not None:
        log(f"TensorBoard logs: {write_dir / rd.TENSORBOARD}")

    if stage == 1:
        log(
            f"stage 1: head only, {cfg.epochs} epochs at lr {stage1.lr:g} ({cfg.optimizer})"
            + ("; on cached base features (no augmentation)" if cfg.cache_features else "")
        )
        if cfg.cache_features:
            from tlkit.finetune.cached_head import cached_head_data

            with strategy.scope():
                head, cached_train, cached_val = cached_head_data(
                    model,
                    source,
                    size,
                    cfg.batch_size,
                    channels,
                    log,
                    skip_undecodable=bool(cfg.check_sample),
                    label_classes=n if stage1.soft_labels else None,
                )
                train.compile_model(head, stage1, n)
            next_epoch = train.fit_stage(
                head,
                cached_train,
                cached_val,
                stage1,
                run_dir=write_dir,
                initial_epoch=next_epoch,
                stage_start=0,
                best=best,
                class_weight=class_weight,
                extra_callbacks=extra,
                verbose=verbose,
                checkpoint_model=model,
                batch_size=cfg.batch_size,
                loggers=loggers(cached_val),
            )
        else:
            next_epoch = fit(
                model,
                train_ds,
                val_ds,
                stage1,
                run_dir=write_dir,
                initial_epoch=next_epoch,
                stage_start=0,
                best=best,
                class_weight=class_weight,
                extra_callbacks=extra,
                verbose=verbose,
                loggers=loggers(val_ds),
            )
        best = recorder.read_state(write_dir).get("best", best)
        stage1_end = next_epoch
        unfrozen: list[str] = []
        if cfg.finetune_epochs > 0 and cfg.unfreeze != "0":
            with strategy.scope():
                from tlkit.finetune import ema

                # --ema: stage 2 starts from the EMA weights (also when a resume skipped fit's own
                # finalize), and its average from them, counting on (one EMA across the run).
                ema.finalize(model)
                count = ema.updates(model)
                unfrozen = heads.unfreeze_top(model, cfg.unfreeze, train_batchnorm=cfg.train_batchnorm)
                (job.compile or train.compile_model)(model, stage2, n)
                # Built now, so the checkpoint below holds all its (zero) slots and loads back whole.
                model.optimizer.build(model.trainable_variables)
                ema.carry_count(model, count)
        if unfrozen:
            # The recompiled model (new trainable set, fresh optimizer) is what a resume must load;
            # saved before the state that says "stage 2", so a kill in between resumes stage 1's end.
            recorder.save_checkpoint(model, write_dir / rd.LAST)
        recorder.write_state(
            write_dir,
            {"stage": 2, "next_epoch": next_epoch, "stage_start": stage1_end, "best": best, "unfrozen": unfrozen},
        )
        if run is not None and unfrozen:
            run.commit()
    state = recorder.read_state(write_dir)
    stage_start = int(state.get("stage_start", next_epoch))
    unfrozen = state.get("unfrozen", [])
    if unfrozen:
        log(
            f"stage 2: unfroze {len(unfrozen)} block(s) ({', '.join(unfrozen)}), {cfg.finetune_epochs} epochs "
            f"at lr {stage2.lr:g}; BatchNorm {'trained' if cfg.train_batchnorm else 'frozen, inference mode'}"
        )
        fit(
            model,
            train_ds,
            val_ds,
            stage2,
            run_dir=write_dir,
            initial_epoch=int(state.get("next_epoch", stage_start)),
            stage_start=stage_start,
            best=state.get("best"),
            class_weight=class_weight,
            extra_callbacks=extra,
            verbose=verbose,
            extra_state={"unfrozen": unfrozen},
            loggers=loggers(val_ds),
        )
    if is_multi_worker(strategy):
        from tlkit.features.extract import weights_fingerprint

        log(f"final weights fingerprint {weights_fingerprint(model)}")
    if run is None:
        return {"worker": "not the chief: the chief evaluates and writes the run directory"}
    if run.checkpoint() is None:
        raise ConfigError(
            f"nothing was trained: --epochs {cfg.epochs} and stage 2 unfroze no block of "
            f"{cfg.base} (--unfreeze {cfg.unfreeze}); pass --epochs N or --unfreeze all"
        )
    metrics = (job.finish or _finish)(run, source, classes, size, cfg, log)
    recorder.write_state(run.path, {**recorder.read_state(run.path), "done": True})
    return metrics


def _finish(run: RunDir, source: Any, classes: list[str], size: tuple, cfg: FinetuneConfig, log: Log) -> dict:
    """Evaluate the run's checkpoint (best, else last) on the validation split; write metrics and pictures."""
    from tlkit import evaluate, plots
    from tlkit.data import pipeline as tldata

    run_dir = run.path
    history = recorder.read_history(run_dir / rd.HISTORY)
    if history:
        plots.training_curves(history, run_dir / rd.CURVES, title=f"{cfg.base} on {cfg.data}")
    if getattr(source, "multi_label", False):  # thresholds, AP and F1 per class: tlkit.finetune.multilabel
        from tlkit.finetune import multilabel

        return multilabel.finish(run, source, classes, size, cfg, log)
    split = "val" if tldata.dataset_size(source, "val") > 0 else "train"
    ckpt = run.require_checkpoint()
    model = run.load_checkpoint(ckpt)
    ds = tldata.make_dataset(
        source,
        split,
        image_size=size,
        batch_size=cfg.batch_size,
        training=False,
        channels=model.input_shape[-1],
        skip_undecodable=bool(cfg.check_sample),
    )
    y, probs = evaluate.predict_dataset(model, ds)
    metrics = evaluate.metrics_from_probs(y, probs, classes)
    metrics.update({"split": split, "checkpoint": ckpt.name, "epochs_run": len(history)})
    run.write_json(rd.METRICS, metrics)
    import numpy as np

    plots.confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        classes,
        run_dir / rd.CONFUSION,
        split=split,
        about=f"{cfg.base} on {cfg.data}, {ckpt.name}",
    )
    log(
        f"{split} top-1 accuracy {metrics['top1']:.4f}"
        + (f", top-5 {metrics['top5']:.4f}" if "top5" in metrics else "")
        + f" ({ckpt.name}); run: {shown_run(cfg, run_dir)}"
    )
    return metrics
