"""Feature extraction on Apache Beam: ``tlkit extract``'s rows, schema and metadata, on any runner.

Install the extra first: ``pip install "tlkit[beam]"``. The pipeline:

1. the driver lists the files and their labels/splits (as ``tlkit extract`` does), builds the
   tap model once and saves its weights (``.OUT.tap_model.weights.h5``) next to the output;
2. each file is checked and decoded on the workers with the same functions as the
   single-process extractor (:func:`tlkit.data.preflight.inspect_file`, then the training
   pipeline's decode and resize): bad files go to a side output, written as
   ``OUT.skipped.csv`` with the columns ``tlkit extract`` writes;
3. Beam's ``RunInference`` batches the images through a small model handler that builds
   the tap model inside ``load_model`` and loads the driver's weights from their path (a
   live model is never pickled);
4. rows are written as sharded Parquet (``OUT-SSSSS-of-NNNNN.parquet``) with the schema and
   the ``tlkit`` metadata of :func:`tlkit.features.extract.extract`, so :func:`load_features` reads
   the shards as one table.

Runner flags go to Beam untouched (``--runner``, ``--direct_num_workers``, Dataflow's
``--project``/``--region``/``--temp_location``, Flink's ``--flink_master``, Spark's
``--spark_master_url``...). Locally, ``tlkit extract --runner beam`` uses Beam's
``FnApiRunner`` with ``--direct_num_workers`` worker processes. Paths here are local paths: on a
cluster runner (Flink, Spark) the images and the output folder must be on a filesystem
every worker mounts at the same path. ``tlkit extract --runner beam --out gs://...`` (or
``s3://``) with a local runner stages the shards in a local temporary folder and uploads them when
the pipeline is done (:mod:`tlkit.features.remote_out`). With a cluster runner (Dataflow) and
``--out gs://...``, nothing goes through the driver's disk: the weights travel as a hidden object
beside the output, the workers read ``gs://`` images themselves and Beam's sinks write the shards
and ``OUT.skipped.csv`` to the bucket (:mod:`tlkit.features.beam_store_io`; ``tlkit[dataflow]``).
A cluster runner with ``s3://`` is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import move_into_place
from tlkit._quiet_tf import captured_stderr
from tlkit.errors import ConfigError, DataError

SKIPPED_COLUMNS = ("path", "reason", "detail", "split", "label")


def require_beam() -> Any:
    """Import ``apache_beam`` or say how to install it."""
    try:
        import apache_beam as beam
    except ImportError:
        raise ConfigError('the Beam runner needs the beam extra: pip install "tlkit[beam]"') from None
    return beam


@dataclasses.dataclass
class BeamExtractResult:
    """What a Beam extraction wrote."""

    shards: list[Path] | list[str]  # URLs when --out is on a bucket
    rows: int
    skipped_files: int
    seconds: float


class TapModelHandler:  # a ModelHandler; the base class is attached in _model_handler()
    """Builds tlkit's tap model inside ``load_model`` and runs batches of images through it.

    What travels to the workers is the build recipe (base, taps, size, pooling) and the path
    of the driver's weights file, never a live model: each worker builds the same graph
    without weights and loads the driver's weights from that path (taps inside nested bases
    do not round-trip through a whole-model ``.keras`` file, weights do).
    """

    def __init__(
        self, recipe: dict[str, Any], weights_path: str, *, batch_size: int = 32, intra_op_threads: int = 1
    ) -> None:
        self.recipe = dict(recipe)
        self.weights_path = str(weights_path)
        self.layers = list(recipe["layers"])
        self.batch_size = int(batch_size)
        self.intra_op_threads = int(intra_op_threads)

    def load_model(self) -> Any:
        import tensorflow as tf

        # Several worker processes share the machine's cores: one thread pool each, sized on purpose.
        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised in this process: keep its pools
        from tlkit.features.extract import build_tap_model

        model, _ = build_tap_model(
            self.recipe["base"],
            self.layers,
            weights=None,
            input_size=tuple(self.recipe["input_size"]),
            pooling=self.recipe["pooling"],
            seed=0,
        )
        from tlkit.features.beam_store_io import local_weights

        with local_weights(self.weights_path) as path:  # a gs:// object: downloaded to this worker first
            model.load_weights(path)
        return model

    def run_inference(self, batch: Sequence[np.ndarray], model: Any, inference_args: Any = None) -> Iterable[Any]:
        from apache_beam.ml.inference.base import PredictionResult

        out = model.predict_on_batch(np.stack(batch))
        for i, image in enumerate(batch):
            yield PredictionResult(
                image, {name: np.asarray(out[name][i], dtype=np.float32).reshape(-1) for name in self.layers}
            )

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}


def _model_handler(recipe: dict[str, Any], weights_path: str, batch_size: int, threads: int) -> Any:
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

    handler_cls = type("TlkitTapModelHandler", (TapModelHandler, ModelHandler), {})
    handler = handler_cls(recipe, weights_path, batch_size=batch_size, intra_op_threads=threads)
    ModelHandler.__init__(handler)
    return KeyedModelHandler(handler)


class _CheckAndDecode:  # a beam.DoFn; the base class is attached in _check_and_decode()
    """Check a file as the preflight does; decode and resize it as the training pipeline does."""

    def __init__(self, size: tuple[int, int], channels: int) -> None:
        self.size = tuple(size)
        self.channels = int(channels)

    def process(self, row: dict[str, Any]) -> Iterable[Any]:
        import apache_beam as beam
        import tensorflow as tf

        from tlkit.data import pipeline as tldata
        from tlkit.data import resize as rs
        from tlkit.data.decode import decode_need
        from tlkit.data.preflight import inspect_file
        from tlkit.storage.remote import is_remote

        remote = is_remote(row["path"])
        if remote:  # a cluster's worker reads its objects from the bucket
            from tlkit.features.beam_store_io import read_image

            info, data = read_image(row["path"])
        else:
            info = inspect_file(row["path"])
        if not info["ok"]:
            yield beam.pvalue.TaggedOutput(
                "bad",
                {
                    "path": row["path"],
                    "reason": info["reason"],
                    "detail": info["detail"],
                    "split": row["split"],
                    "label": row["label"],
                },
            )
            return
        if remote:
            from tlkit.data.decode import decode_bytes

            img = rs.resize(decode_bytes(tf.constant(data), decode_need(self.size)), self.size)
        else:
            img = rs.resize(tldata._decode_file(tf.constant(row["path"]), decode_need(self.size)), self.size)
        if self.channels == 1:
            img = tf.image.rgb_to_grayscale(img)
        yield (json.dumps(row, sort_keys=True), np.asarray(img, dtype=np.float32))


def _check_and_decode(size: tuple[int, int], channels: int) -> Any:
    import apache_beam as beam

    fn_cls = type("TlkitCheckAndDecode", (_CheckAndDecode, beam.DoFn), {})
    return fn_cls(size, channels)


def parquet_schema(layers: Sequence[str], dims: dict[str, int], meta: dict) -> Any:
    """The schema of ``tlkit extract``'s Parquet files: keys, then one fixed-size float32 list per layer."""
    import pyarrow as pa

    from tlkit.features.store import META_KEY

    fields = [
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("label_id", pa.int32()),
        pa.field("split", pa.string()),
    ]
    fields += [pa.field(name, pa.list_(pa.float32(), int(dims[name]))) for name in layers]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta, sort_keys=True).encode()})


def _to_record(keyed: tuple[str, Any], layers: Sequence[str]) -> dict[str, Any]:
    key, result = keyed
    row = json.loads(key)
    rec = {"path": row["path"], "label": row["label"], "label_id": int(row["label_id"]), "split": row["split"]}
    for name in layers:
        rec[name] = result.inference[name].tolist()
    return rec


def _skipped_line(bad: dict[str, str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([bad[k] for k in SKIPPED_COLUMNS])
    return buf.getvalue()


def extract_beam(
    base: str,
    layers: Sequence[str],
    data: str,
    out: str | os.PathLike,
    *,
    weights: str | None = "imagenet",
    pooling: str = "avg",
    input_size: tuple[int, int] | None = None,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    num_shards: int = 0,
    pipeline_args: Sequence[str] = (),
    force: bool = False,
) -> BeamExtractResult:
    """Extract ``layers`` of ``base`` for every usable image of ``data`` with Apache Beam.

    Writes ``OUT-SSSSS-of-NNNNN.parquet`` shards beside ``out`` (``out`` ends in ``.parquet``)
    and ``OUT.skipped.csv``. ``pipeline_args`` are Beam's own flags; without ``--runner``
    the local multi-process ``FnApiRunner`` with two workers is used.
    """
    from tlkit.data import pipeline as tldata
    from tlkit.features import beam_store_io as store_io
    from tlkit.features.extract import build_tap_model
    from tlkit.storage.remote import is_remote

    remote = is_remote(os.fspath(out))  # gs://: a cluster's workers write there with Beam's file system
    url = os.fspath(out)
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"the Beam runner writes Parquet shards: --out must end in .parquet, got {out.name!r}")
    prefix = out.with_suffix("")
    if remote:
        from tlkit.features.remote_out import remote_shards

        store_io.require_beam_gcs()
        existing: list = remote_shards(url)
    else:
        existing = sorted(out.parent.glob(f"{prefix.name}-*-of-*.parquet"))
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to replace the shards of {url}")
    quiet = not os.environ.get("TLKIT_VERBOSE")
    with captured_stderr(quiet):  # Beam warns at import about optional cloud clients
        beam = require_beam()
        from apache_beam.ml.inference.base import RunInference
        from apache_beam.options.pipeline_options import PipelineOptions
    source = tldata.resolve(data, val_split=val_split, seed=seed)
    if source.kind != "files":
        raise DataError(
            "feature extraction reads image files (a folder, CSV or builtin:); for TFDS data, "
            "export the images to a folder first"
        )
    items = source.items.sort_values("path", kind="stable").reset_index(drop=True)
    rows = [
        {"path": str(r.path), "label": str(r.label), "label_id": int(r.label_id), "split": str(r.split)}
        for r in items.itertuples()
    ]
    model, meta = build_tap_model(base, layers, weights=weights, input_size=input_size, pooling=pooling, seed=seed)
    meta.update({"data": data, "classes": list(source.classes), "seed": seed, "val_split": val_split})
    dims = {name: int(np.prod(model.output[name].shape[1:])) for name in layers}
    size = tuple(meta["input_size"])
    channels = int(model.input_shape[-1])
    if remote:
        weights_ref = store_io.weights_url(url)
        store_io.upload_weights(model, weights_ref)
        # Straight to the final names: Beam's sinks write temporaries and rename them once every bundle is done.
        write_prefix, skipped_ref = url[: -len(".parquet")], url + ".skipped.csv"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        weights_path = out.with_name(f".{out.name}.tap_model.weights.h5")
        model.save_weights(weights_path)
        weights_ref = str(weights_path)
    recipe = {"base": base, "layers": list(layers), "input_size": list(size), "pooling": pooling}
    del model
    # Written under a temporary prefix, then renamed: a failed run leaves the previous shards whole.
    tmp_prefix = out.parent / f".{prefix.name}.tmp-{os.getpid()}"
    if not remote:
        write_prefix, skipped_ref = str(tmp_prefix), str(out.with_name(out.name + ".skipped.csv"))
    args = list(pipeline_args)
    if not any(a.startswith("--runner") for a in args):
        # Beam's DirectRunner would try to download a runner binary; the FnApiRunner runs in-process.
        args += ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    workers = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--direct_num_workers=")), 1)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    t0 = time.time()
    try:
        # Beam's workers are processes that start TensorFlow and log at INFO: quiet unless --verbose.
        with captured_stderr(quiet), beam.Pipeline(options=PipelineOptions(args)) as p:
            checked = (
                p
                | "files" >> beam.Create(rows)
                | "check and decode" >> beam.ParDo(_check_and_decode(size, channels)).with_outputs("bad", main="ok")
            )
            (
                checked.ok
                | "features" >> RunInference(_model_handler(recipe, weights_ref, batch_size, threads))
                | "records" >> beam.Map(_to_record, layers)
                | "write"
                >> beam.io.WriteToParquet(
                    write_prefix,
                    parquet_schema(layers, dims, meta),
                    file_name_suffix=".parquet",
                    num_shards=num_shards,
                )
            )
            (
                checked.bad
                | "bad lines" >> beam.Map(_skipped_line)
                | "skipped"
                >> beam.io.WriteToText(skipped_ref, shard_name_template="", header=",".join(SKIPPED_COLUMNS))
            )
    finally:
        if remote:
            store_io.delete_quietly(weights_ref)
        else:
            Path(weights_ref).unlink(missing_ok=True)
            written = sorted(out.parent.glob(f"{tmp_prefix.name}-*-of-*.parquet"))
    seconds = time.time() - t0
    if remote:
        shards = remote_shards(url)
        for stale in set(existing) - set(shards):  # --force: old shards the new set did not overwrite
            store_io.delete_quietly(stale)
        return BeamExtractResult(
            shards=shards,
            rows=store_io.count_rows(shards),
            skipped_files=store_io.count_skipped(skipped_ref),
            seconds=seconds,
        )
    for shard in existing:
        shard.unlink()
    for shard in written:
        move_into_place(shard, out.parent / (prefix.name + shard.name[len(tmp_prefix.name) :]))
    shards = sorted(out.parent.glob(f"{prefix.name}-*-of-*.parquet"))
    import pyarrow.parquet as pq

    n_rows = sum(pq.read_metadata(s).num_rows for s in shards)
    skipped_path = Path(skipped_ref)
    n_bad = max(0, len(skipped_path.read_text().splitlines()) - 1) if skipped_path.exists() else 0
    return BeamExtractResult(shards=shards, rows=n_rows, skipped_files=n_bad, seconds=seconds)
