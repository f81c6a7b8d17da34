"""One training stage under ``MultiWorkerMirroredStrategy``: a custom loop with Keras' callbacks.

Why not ``model.fit``: with the pinned TensorFlow 2.21 and Keras 3.15, ``fit`` under
``MultiWorkerMirroredStrategy`` fails on every worker before the first step
(``Attempt to convert a value (PerReplica...) to a Tensor`` in
``Trainer._maybe_symbolic_build``, keras-team/keras#20585), and past that in its metric
reduction (``Invalid reduction dimension 0 for input with 0 dimensions``). A training step
written with ``strategy.run`` and a ``GradientTape`` does run, gives identical weights on
every worker, and matches a single-process run with the same global batch.

The loop drives the same callbacks ``fit`` would get (:func:`tlkit.finetune.train.stage_callbacks`:
schedules, plateau, early stopping and the run recorder that writes checkpoints, history
and state), so a distributed run directory is the same as a local one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlkit.distribute import WorkerFailedError
from tlkit.finetune import train
from tlkit.finetune.ema import ema_weights, finalize


def _step_fns(
    model: keras.Model,
    strategy: Any,
    num_classes: int,
    class_weight: dict[int, float] | None,
    label_smoothing: float = 0.0,
) -> tuple[Callable, Callable]:
    """Compiled train and eval steps; each returns global sums (loss, correct, top5, count).

    Labels are class ids, or float label vectors (``--label-smoothing``/``--mixup``/``--cutmix``:
    categorical cross-entropy with the smoothing; accuracy and class weights by the largest entry,
    as ``fit`` does). A worker's batch was mixed within itself in its pipeline
    (:mod:`tlkit.data.mixing`), before the weight-0 zero image below is added: padding never mixes.

    A multi-label model (sigmoid head) sums (loss, true positives at 0.5, false positives and
    negatives at 0.5, count) instead, and both steps add the counts that PR AUC needs
    (:func:`_multi_label_sums`).
    """
    import tensorflow as tf

    from tlkit.finetune import losses
    from tlkit.finetune.multilabel import is_multi_label

    if is_multi_label(model):
        return _multi_label_step_fns(model, strategy, num_classes, label_smoothing)
    weights = None
    if class_weight:
        weights = tf.constant([float(class_weight.get(i, 1.0)) for i in range(num_classes)], tf.float32)
    k = min(5, num_classes)

    def _padded(x: Any, y: Any) -> tuple[Any, Any, Any]:
        # The last global batch can leave a worker with no example, and TensorFlow's CPU
        # convolution mis-shapes an empty batch; such a worker runs one zero image with
        # weight 0 instead (it still joins the gradient all-reduce, contributing nothing).
        pad = tf.cast(tf.equal(tf.shape(x)[0], 0), tf.int32)
        x = tf.concat([x, tf.zeros(tf.concat([[pad], tf.shape(x)[1:]], 0), x.dtype)], 0)
        if y.shape.rank == 2:  # float label vectors
            y = tf.concat([tf.cast(y, tf.float32), tf.zeros([pad, num_classes], tf.float32)], 0)
        else:
            y = tf.concat([tf.cast(tf.reshape(y, [-1]), tf.int32), tf.zeros([pad], tf.int32)], 0)
        mask = tf.concat([tf.ones([tf.shape(y)[0] - pad]), tf.zeros([pad])], 0)
        return x, y, mask

    def _sums(y: Any, probs: Any, mask: Any) -> tuple[Any, Any, Any, Any]:
        probs = tf.cast(probs, tf.float32)
        per_example = losses.per_example(y, probs, label_smoothing) * mask
        ids = losses.class_ids(y)
        correct = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), ids), tf.float32) * mask
        top5 = tf.cast(tf.math.in_top_k(ids, probs, k), tf.float32) * mask
        return per_example, tf.reduce_sum(correct), tf.reduce_sum(top5), tf.reduce_sum(mask)

    def replica_train(x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
        ctx = tf.distribute.get_replica_context()
        # The mean over the GLOBAL batch, as a single process computes it (last batch included).
        n_global = ctx.all_reduce("SUM", tf.cast(tf.shape(y)[0], tf.float32))
        x, y, mask = _padded(x, y)
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example, correct, top5, n = _sums(y, probs, mask)
            if weights is not None:
                per_example = per_example * tf.gather(weights, losses.class_ids(y))
            loss = tf.reduce_sum(per_example) / n_global
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        model.optimizer.apply_gradients(zip(grads, variables))
        return tf.reduce_sum(per_example), correct, top5, n

    def replica_eval(x: Any, y: Any) -> tuple[Any, Any, Any, Any, Any]:
        x, y, mask = _padded(x, y)
        probs = model(x, training=False)
        per_example, correct, top5, n = _sums(y, probs, mask)
        # The confusion matrix too (summed over the workers: the whole split's), for --tensorboard's image.
        pred = tf.argmax(probs, -1, output_type=tf.int32)
        confusion = tf.math.confusion_matrix(losses.class_ids(y), pred, num_classes, weights=mask, dtype=tf.float32)
        return tf.reduce_sum(per_example), correct, top5, n, confusion

    return _reduced(strategy, replica_train), _reduced(strategy, replica_eval)


def _reduced(strategy: Any, fn: Callable) -> Callable:
    """``fn`` run on every replica, as one compiled step returning its outputs summed over all of them."""
    import tensorflow as tf

    @tf.function
    def step(x: Any, y: Any) -> Any:
        out = strategy.run(fn, args=(x, y))
        return [strategy.reduce("SUM", v, axis=None) for v in out]

    return step


def _pr_auc_metric(num_classes: int) -> Any:
    """The Keras metric ``fit`` logs as ``pr_auc`` for a multi-label run (its thresholds, its formula)."""
    return keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes, name="pr_auc")


def _multi_label_step_fns(
    model: keras.Model, strategy: Any, num_classes: int, label_smoothing: float = 0.0
) -> tuple[Callable, Callable]:
    """:func:`_step_fns` for a multi-label model: binary cross-entropy (with ``--label-smoothing``) on
    multi-hot labels [B, C]."""
    import tensorflow as tf

    thresholds = tf.constant(np.asarray(_pr_auc_metric(num_classes).thresholds, dtype=np.float32))

    def _padded(x: Any, y: Any) -> tuple[Any, Any, Any]:
        # As in _step_fns: an empty share of the last global batch runs one zero image with weight 0.
        pad = tf.cast(tf.equal(tf.shape(x)[0], 0), tf.int32)
        x = tf.concat([x, tf.zeros(tf.concat([[pad], tf.shape(x)[1:]], 0), x.dtype)], 0)
        y = tf.reshape(tf.cast(y, tf.float32), [-1, num_classes])
        y = tf.concat([y, tf.zeros([pad, num_classes], tf.float32)], 0)
        mask = tf.concat([tf.ones([tf.shape(y)[0] - pad]), tf.zeros([pad])], 0)
        return x, y, mask

    def _sums(y: Any, probs: Any, mask: Any) -> tuple[Any, ...]:
        probs = tf.cast(probs, tf.float32)
        per_example = keras.losses.binary_crossentropy(y, probs, label_smoothing=float(label_smoothing)) * mask
        m = mask[:, None]
        hit = tf.cast(probs > 0.5, tf.float32)  # as keras.metrics.F1Score(threshold=0.5) counts
        tp = tf.reduce_sum(hit * y * m)
        wrong = tf.reduce_sum(hit * (1 - y) * m) + tf.reduce_sum((1 - hit) * y * m)
        # PR AUC's confusion counts [4, T, C] at keras.metrics.AUC's thresholds (it predicts score > t).
        pos = tf.cast(probs[None] > thresholds[:, None, None], tf.float32) * m[None]
        lab = y[None]
        counts = tf.stack(
            [
                tf.reduce_sum(pos * lab, 1),
                tf.reduce_sum(pos * (1 - lab), 1),
                tf.reduce_sum((m[None] - pos) * (1 - lab), 1),
                tf.reduce_sum((m[None] - pos) * lab, 1),
            ]
        )
        return per_example, tp, wrong, tf.reduce_sum(mask), counts

    def replica_train(x: Any, y: Any) -> tuple[Any, ...]:
        ctx = tf.distribute.get_replica_context()
        n_global = ctx.all_reduce("SUM", tf.cast(tf.shape(x)[0], tf.float32))
        x, y, mask = _padded(x, y)
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example, tp, wrong, n, counts = _sums(y, probs, mask)
            loss = tf.reduce_sum(per_example) / n_global
        variables = model.trainable_variables
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.reduce_sum(per_example), tp, wrong, n, counts

    def replica_eval(x: Any, y: Any) -> tuple[Any, ...]:
        x, y, mask = _padded(x, y)
        per_example, tp, wrong, n, counts = _sums(y, model(x, training=False), mask)
        return tf.reduce_sum(per_example), tp, wrong, n, counts

    return _reduced(strategy, replica_train), _reduced(strategy, replica_eval)


def _multi_label_logs(totals: np.ndarray, counts: np.ndarray | None, prefix: str, num_classes: int) -> dict:
    """loss, f1 (micro, at 0.5) and pr_auc of an epoch's sums, as ``fit`` logs them."""
    loss, tp, wrong, n = totals
    logs = {f"{prefix}loss": loss / max(n, 1.0), f"{prefix}f1": 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0}
    if counts is not None:
        auc = _pr_auc_metric(num_classes)
        for var, value in zip(
            (auc.true_positives, auc.false_positives, auc.true_negatives, auc.false_negatives), counts
        ):
            var.assign(value.astype("float32"))
        logs[f"{prefix}pr_auc"] = float(auc.result())
    return logs


def _run_epoch(step: Callable, dataset: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The epoch's sums (loss, correct, top5, count), and the eval step's confusion matrix (else None)."""
    import tensorflow as tf

    totals, confusion = np.zeros(4), None
    try:
        for x, y in dataset:
            out = step(x, y)
            totals += np.asarray([float(v) for v in out[:4]])
            if len(out) > 4:
                matrix = np.asarray(out[4], dtype=np.float64)
                confusion = matrix if confusion is None else confusion + matrix
    except tf.errors.OpError as exc:
        if not _lost_peer(exc):
            raise
        # A peer died or hangs: the collective fails here (at once, or after the strategy's timeout).
        first = " ".join(str(exc.message).split())[:200]
        raise WorkerFailedError(
            f"lost contact with another worker ({type(exc).__name__}: {first}); restart "
            f"every worker with the same command and --resume to continue from the last "
            f"completed epoch"
        ) from None
    return totals, (None if confusion is None else np.rint(confusion).astype(np.int64))  # multi-label: PR AUC counts


def _lost_peer(exc: Exception) -> bool:
    """Whether a TensorFlow error says a collective lost its peer (not a bug of ours)."""
    import tensorflow as tf

    if isinstance(exc, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
        return True
    text = str(getattr(exc, "message", exc)).lower()
    # A dead peer's gRPC connection surfaces as INTERNAL/CANCELLED/UNKNOWN with these words.
    return any(
        w in text
        for w in (
            "connection reset",
            "error received from peer",
            "socket closed",
            "failed to connect",
            "the tasks have crashed",
            "collective ops is aborted",
        )
    )


def _logs(totals: np.ndarray, prefix: str, num_classes: int) -> dict[str, float]:
    loss, correct, top5, n = totals
    n = max(n, 1.0)
    logs = {f"{prefix}loss": loss / n, f"{prefix}accuracy": correct / n}
    if num_classes > 5:
        logs[f"{prefix}top5"] = top5 / n
    return logs


def distribute(dataset: Any, strategy: Any, shard: Any = None) -> Any:
    """``dataset`` over the workers.

    ``shard`` given (file sources): ``dataset`` is already this worker's share, made by
    :func:`tlkit.data.pipeline.make_dataset` with that ``shard`` (:mod:`tlkit.data.sharding`): the
    worker reads and decodes only its ~1/N of the files, takes offsets ``i, i+N, ...`` of every
    global batch of the epoch's (seed, epoch)-shuffled list, and runs ``ceil(n / batch)`` steps like
    every other worker. Nothing is dropped or repeated: a worker with no item in the last global batch
    gets an empty batch and runs one zero image with weight 0 (see ``_step_fns``), so the loss,
    gradients and metrics count every image once, and a step's global batch is the one a single
    process trains on. For prepared records, ``dataset`` holds this worker's own shard files
    (:func:`tlkit.data.sharding.batch_own`): every image still counts once per epoch and every worker
    runs the same number of steps, but the global batches are not a single process's.

    Without ``shard`` (TFDS datasets), every worker runs the whole pipeline and keeps its slice
    of each global batch (auto-shard by DATA): the same batches, but every worker decodes everything.
    """
    import tensorflow as tf

    options = tf.data.Options()
    if shard is None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return strategy.experimental_distribute_dataset(dataset.with_options(options))
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def this_worker(ctx: Any) -> Any:
        if (ctx.input_pipeline_id, ctx.num_input_pipelines) != (shard.index, shard.count):
            raise RuntimeError(
                f"input pipeline {ctx.input_pipeline_id} of {ctx.num_input_pipelines} was built as shard "
                f"{shard.index} of {shard.count}"
            )
        return dataset.with_options(options)

    return strategy.distribute_datasets_from_function(this_worker)


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every BatchNormalization layer of ``model`` compute its batch statistics over the global batch.

    A BatchNorm layer that trains (``--train-batchnorm`` in stage 2: Keras 3 runs it in training
    mode) normalises each batch by that batch's mean and variance. Unsynchronised, each worker
    would use the statistics of its own slice of the global batch, and train something else than
    one process does; synchronised (Keras' ``synchronized=True``), the workers all-reduce sums and
    counts, so every worker normalises by the global batch's statistics, as one process does.
    Frozen BatchNorm layers (inference mode) compute no statistics and are unaffected.
    Returns how many layers were switched.
    """
    count = 0
    from tlkit._keras_compat import all_sublayers

    for layer in all_sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            count += 1
    return count


def fit_stage_distributed(
    model: keras.Model,
    train_ds: Any,
    val_ds: Any,
    cfg: train.StageConfig,
    *,
    strategy: Any,
    run_dir: Path,
    initial_epoch: int,
    stage_start: int,
    best: float | None,
    num_classes: int,
    class_weight: dict | None = None,
    extra_callbacks: Iterable[Any] = (),
    extra_state: dict | None = None,
    log: Callable[[str], None] = print,
    loggers: Iterable[Any] = (),
    shard: Any = None,
) -> int:
    """Train one stage from ``initial_epoch`` (global numbering) under ``strategy``; returns the next epoch.

    ``train_ds``/``val_ds`` are the batched datasets a single process would use (global
    batch size), or, with ``shard``, this worker's share of them; see :func:`distribute`. The
    model must have been built and compiled inside ``strategy.scope()``.
    """
    end = stage_start + cfg.epochs
    if initial_epoch >= end:
        return initial_epoch
    loggers = list(loggers)
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    synchronize_batchnorm(model)
    if cfg.schedule in ("step", "cosine"):
        model.optimizer.learning_rate.assign(train.schedule_lr(cfg, initial_epoch - stage_start))
    train_ds = distribute(train_ds, strategy, shard)
    val_ds = distribute(val_ds, strategy, shard) if val_ds is not None else None
    train_step, eval_step = _step_fns(model, strategy, num_classes, class_weight, cfg.label_smoothing)
    from tlkit.finetune.multilabel import is_multi_label

    multi = is_multi_label(model)

    def epoch_logs(out: tuple, prefix: str) -> dict[str, float]:
        return _multi_label_logs(out[0], out[1], prefix, num_classes) if multi else _logs(out[0], prefix, num_classes)

    callbacks = train.stage_callbacks(
        cfg,
        run_dir,
        stage_start,
        best,
        extra_callbacks,
        has_val=val_ds is not None,
        extra_state=extra_state,
        loggers=loggers,
    )
    cbl = keras.callbacks.CallbackList(callbacks, model=model, add_history=False, add_progbar=False)
    model.stop_training = False
    cbl.on_train_begin()
    epoch = initial_epoch
    for epoch in range(initial_epoch, end):
        cbl.on_epoch_begin(epoch)
        t0 = time.time()
        logs = epoch_logs(_run_epoch(train_step, train_ds), "")
        if val_ds is not None:
            with ema_weights(model):  # --ema: the averaged weights are validated, as fit does (EmaValidation)
                sums, confusion = _run_epoch(eval_step, val_ds)
            logs.update(epoch_logs((sums, confusion), "val_"))
            for cb in loggers if not multi else ():
                if hasattr(cb, "set_confusion"):  # the image's matrix: no prediction on the chief alone
                    cb.set_confusion(confusion)
        cbl.on_epoch_end(epoch, logs)
        log(
            f"epoch {epoch + 1}/{end} ({time.time() - t0:.1f} s): " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
        )
        if model.stop_training:
            break
    finalize(model)  # --ema: the stage ends on its EMA weights, as fit's finalize_variable_values does
    cbl.on_train_end()
    return epoch + 1
