"""``--tensorboard``: TensorBoard logs of a run under ``RUN/tensorboard/``, one step per epoch.

Scalars come from Keras' own :class:`keras.callbacks.TensorBoard` (``train/`` and ``validation/``:
``epoch_loss``, ``epoch_accuracy``, the run's other metrics, and ``epoch_learning_rate`` in
``train/``); :class:`ConfusionImages` adds the validation split's confusion matrix as
a PNG image per epoch (``validation/``, tag ``confusion_matrix``), drawn as the run's
``confusion.png`` is. The step is the run's global epoch (0-based, as in ``history.csv``), so
stage 2 continues where stage 1 ended, and :func:`truncate` drops on ``--resume`` the epochs the
run's state does not vouch for: a resumed run logs each epoch once.

Summaries are written with TensorFlow core's ``tf.summary.write`` (:class:`_CoreSummary`): with
TensorFlow 2.21, ``tf.summary.scalar`` and ``tf.summary.image`` are implemented in the
``tensorboard`` package, which TensorFlow no longer installs; viewing the logs needs it
(``tensorboard --logdir RUN/tensorboard``), writing them does not.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

CONFUSION_TAG = "confusion_matrix"


class _CoreSummary:
    """``tf.summary`` with ``scalar`` and ``image`` made of core ops and the plugins' metadata.

    The metadata is what the ``tensorboard`` package's own summaries carry (plugin ``scalars``
    and ``images``, empty version-0 content), so TensorBoard reads these as its own.
    """

    def __getattr__(self, name: str) -> Any:
        import tensorflow as tf

        return getattr(tf.summary, name)

    @staticmethod
    def _metadata(plugin: str) -> Any:
        from tensorflow.core.framework import summary_pb2

        return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))

    def scalar(self, name: str, data: Any, step: Any = None, description: str | None = None) -> Any:
        import tensorflow as tf

        value = tf.cast(tf.convert_to_tensor(data), tf.float32)
        return tf.summary.write(name, value, step=step, metadata=self._metadata("scalars"))

    def png(self, name: str, png: bytes, step: int) -> Any:
        """One PNG image, already encoded (the ``images`` plugin stores [width, height, png])."""
        import tensorflow as tf
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            width, height = im.size
        tensor = tf.constant([str(width).encode(), str(height).encode(), png])
        return tf.summary.write(name, tensor, step=step, metadata=self._metadata("images"))


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback writing per-epoch scalars only, flushed at every epoch's end.

    Flushed before the run recorder writes ``state.json`` (it comes first among a stage's
    callbacks), so an epoch the state vouches for is on disk. Keras' ``evaluation_*_vs_iterations``
    scalars are left out: their step is the optimizer's iteration count, which restarts with
    stage 2's new optimizer, so they would not line up with the epochs.
    """

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__(log_dir=str(log_dir), write_graph=False, update_freq="epoch", profile_batch=0)
        self._core_summary = _CoreSummary()

    @property
    def summary(self) -> Any:
        return self._core_summary

    def on_test_end(self, logs: dict | None = None) -> None:
        self._pop_writer()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()


class ConfusionImages(keras.callbacks.Callback):
    """The validation split's confusion matrix as a TensorBoard image at every epoch's end.

    Predicts the validation data again after Keras' validation (Keras does not keep its
    predictions), as evaluation does (:func:`tlkit.evaluate.predict_dataset`), and draws it with
    :func:`tlkit.plots.confusion_matrix_png`. ``val_data`` is a dataset of (images, labels), or
    ``(x, y)`` arrays (stage 1 on cached features: the head's inputs). A multi-worker stage
    computes the matrix in its collective evaluation step and hands it over with
    :meth:`set_confusion` (``val_data`` None): the chief predicting alone would step out of the
    workers' collective operations.
    """

    def __init__(self, log_dir: str | Path, val_data: Any, classes: Sequence[str], batch_size: int = 32) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.val_data = val_data
        self.classes = list(classes)
        self.batch_size = int(batch_size)
        self._writer: Any = None
        self._confusion: np.ndarray | None = None

    def set_confusion(self, matrix: np.ndarray | None) -> None:
        """The coming epoch end's matrix, computed elsewhere (rows: true class, columns: predicted)."""
        self._confusion = None if matrix is None else np.asarray(matrix)

    def _predict(self) -> tuple[np.ndarray, np.ndarray]:
        y, probs = self._labels_and_probs()
        return (y.argmax(-1) if y.ndim == 2 else y), probs  # one-hot labels (--label-smoothing, --mixup)

    def _labels_and_probs(self) -> tuple[np.ndarray, np.ndarray]:
        from tlkit import evaluate

        if isinstance(self.val_data, tuple):
            x, y = self.val_data
            probs = [
                np.asarray(self.model.predict_on_batch(x[i : i + self.batch_size]))
                for i in range(0, len(x), self.batch_size)
            ]
            return np.asarray(y), np.concatenate(probs)
        return evaluate.predict_dataset(self.model, self.val_data)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        from tlkit import evaluate, plots

        if self._confusion is not None:
            matrix, self._confusion = self._confusion, None
        elif self.val_data is not None:
            y, probs = self._predict()
            matrix = np.asarray(evaluate.metrics_from_probs(y, probs, self.classes)["confusion_matrix"])
        else:
            return
        png = plots.confusion_matrix_png(matrix, self.classes, split="val", about=f"epoch {epoch + 1}")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "validation"))
        with self._writer.as_default():
            _CoreSummary().png(CONFUSION_TAG, png, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def callbacks(log_dir: Path, val_data: Any, classes: Sequence[str], batch_size: int) -> list[keras.callbacks.Callback]:
    """The callbacks of one stage: scalars, and the confusion image (none without validation data)."""
    return [EpochTensorBoard(log_dir), ConfusionImages(log_dir, val_data, classes, batch_size)]


def truncate(log_dir: Path, next_epoch: int) -> int:
    """Drop the summaries of epochs ``>= next_epoch`` from the event files under ``log_dir``.

    Run on ``--resume`` before training: an epoch logged but not vouched for by ``state.json``
    (a kill in between) is trained again, and logged again; TensorBoard does not drop the older
    value of a step itself (version-2 event files are never purged by step). Each file is
    rewritten atomically; returns how many summaries were dropped.
    """
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    from tlkit._io import atomic_path
    from tlkit.finetune.rundir import is_temp_name

    dropped = 0
    for leftover in Path(log_dir).rglob(".*") if Path(log_dir).is_dir() else []:
        if is_temp_name(leftover.name) and leftover.is_file():
            leftover.unlink(missing_ok=True)  # a rewrite below killed midway: its name holds "tfevents"
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")) if Path(log_dir).is_dir() else []:
        kept, drop = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                raw = record.numpy()
                event = event_pb2.Event.FromString(raw)
                if event.HasField("summary") and event.step >= next_epoch:
                    drop += 1
                else:
                    kept.append(raw)
        except tf.errors.DataLossError:
            drop += 1  # a record cut short by a kill mid-write: the state never vouched for it
        if drop:
            with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
                for raw in kept:
                    writer.write(raw)
            dropped += drop
    return dropped
