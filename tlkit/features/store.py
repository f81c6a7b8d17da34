"""The features file format: chunk parts, the assembled Parquet/NPZ file, and reading it back.

File layout (Parquet): columns ``path``, ``label``, ``label_id``, ``split`` and one
column per tapped layer holding a fixed-size list of float32 (``fc7`` -> 4096 values).
One list column per layer rather than one column per dimension: VGG's ``pool5`` has
25,088 dimensions, and Parquet's per-column metadata makes 25k-column files slow to
write and read; a fixed-size list column is one contiguous float32 buffer that
:func:`load_features` turns into an (N, D) array without copying row by row.
While :func:`tlkit.features.extract.extract` runs, complete chunks go to
``OUT.parts/part-NNNNN.parquet`` (each written atomically) and are assembled at the end;
this module owns those parts, the assembly, and the readers (:func:`load_features`,
:func:`load_features_meta`, :func:`shard_files`, which also reads Beam's shards).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import atomic_path
from tlkit.errors import DataError, NotFoundError

META_KEY = b"tlkit"
FORMATS = ("parquet", "npz")


def _part_path(parts: Path, index: int) -> Path:
    return parts / f"part-{index:05d}.parquet"


def _write_part(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _chunk_table(rows: Any, feats: dict[str, np.ndarray], meta: dict) -> Any:
    import pyarrow as pa

    cols = {
        "path": pa.array(rows["path"].astype(str).tolist(), pa.string()),
        "label": pa.array(rows["label"].astype(str).tolist(), pa.string()),
        "label_id": pa.array(rows["label_id"].to_numpy(dtype=np.int32), pa.int32()),
        "split": pa.array(rows["split"].astype(str).tolist(), pa.string()),
    }
    for name, arr in feats.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32).reshape(len(rows), -1)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel(), pa.float32()), arr.shape[1])
    table = pa.table(cols)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


def _check_same_extraction(source: Path, meta: dict) -> None:
    """Refuse to resume with another model, layer set, pooling, size or weights: one file,
    one feature space. ``source`` is a part or a finished features file; nothing is written."""
    import pyarrow.parquet as pq

    if source.parent.name.endswith(".parts"):
        schema_meta = pq.read_schema(source).metadata or {}
        old = json.loads(schema_meta.get(META_KEY, b"{}"))
        where = source.parent
    else:
        old, where = load_features_meta(source), source
    if old.get("weights", "imagenet") is None and old.get("weights_seed") is None:
        raise DataError(
            f"cannot resume {where}: its rows come from random weights (--weights none) whose "
            f"seed was not recorded, so no run can rebuild that network; use --force to start over"
        )
    keys = ("model", "layers", "pooling", "input_size", "weights", "weights_seed", "preprocessing", "data")
    # Recorded since the split seed and the weights' fingerprint were: older files are not checked on them.
    keys += tuple(k for k in ("seed", "val_split", "weights_sha256") if k in old)
    diff = {k: (old.get(k), meta.get(k)) for k in keys if old.get(k) != meta.get(k)}
    if diff:
        detail = "; ".join(f"{k}: file has {a!r}, this run asks {b!r}" for k, (a, b) in diff.items())
        raise DataError(
            f"cannot resume {where}: it was extracted differently ({detail}); use --force to start over "
            f"(the file is kept until the new one is complete)"
        )


def _done_paths(parts: Path) -> set[str]:
    import pyarrow.parquet as pq

    done: set[str] = set()
    for part in sorted(parts.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
    return done


def _adopt_finished(out: Path, parts: Path, fmt: str) -> None:
    """Copy a finished file into parts so new images can be appended in order.

    ``out`` itself stays until the new file replaces it (:func:`_assemble`), and the parts
    folder appears complete or not at all: an interruption here loses nothing.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(out) if fmt == "parquet" else _npz_to_table(out)
    if parts.is_dir():  # holds no complete part (the caller checked): at most a killed writer's temporary
        shutil.rmtree(parts)
    with atomic_path(parts) as tmp:
        tmp.mkdir()
        for i, batch in enumerate(table.to_batches(max_chunksize=1 << 30)):
            _write_part(pa.Table.from_batches([batch], schema=table.schema), _part_path(tmp, i))


def _assemble(parts: Path, out: Path, fmt: str) -> None:
    import pyarrow.parquet as pq

    files = sorted(parts.glob("part-*.parquet"))
    if fmt == "parquet":
        schema = pq.read_schema(files[0])
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for f in files:
                writer.write_table(pq.read_table(f, schema=schema))
    else:
        import pyarrow as pa

        table = pa.concat_tables([pq.read_table(f) for f in files])
        arrays = _table_to_arrays(table)
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    shutil.rmtree(parts)


def _table_to_arrays(table: Any) -> dict[str, np.ndarray]:
    meta = json.loads(table.schema.metadata[META_KEY])
    arrays: dict[str, np.ndarray] = {
        "path": np.asarray(table.column("path").to_pylist()),
        "label": np.asarray(table.column("label").to_pylist()),
        "label_id": table.column("label_id").to_numpy(),
        "split": np.asarray(table.column("split").to_pylist()),
        "__meta__": np.asarray(json.dumps(meta, sort_keys=True)),
    }
    for name in meta["layers"]:
        col = table.column(name).combine_chunks()
        arrays[f"features_{name}"] = col.flatten().to_numpy().reshape(len(col), -1)
    return arrays


def _npz_to_table(path: Path) -> Any:

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        rows = {k: z[k] for k in ("path", "label", "label_id", "split")}
        import pandas as pd

        df = pd.DataFrame(rows)
        return _chunk_table(df, {name: z[f"features_{name}"] for name in meta["layers"]}, meta)


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files that make up ``path``: itself, or the ``STEM-SSSSS-of-NNNNN.parquet``
    shards a Beam extraction wrote in its place; refuses a missing path."""
    path = Path(path)
    if path.exists():
        return [path]
    shards = sorted(path.parent.glob(f"{path.stem}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].parquet"))
    if path.suffix == ".parquet" and shards:
        return shards
    raise NotFoundError(f"no features file at {path}")


def load_features_meta(path: str | os.PathLike) -> dict:
    """A features file's metadata only (no feature arrays read)."""
    import pyarrow.parquet as pq

    path = shard_files(path)[0]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z:
                raise DataError(f"{path} is not a tlkit features file (no tlkit metadata)")
            return json.loads(str(z["__meta__"]))
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a tlkit features file ({err})") from None
    if META_KEY not in meta:
        raise DataError(f"{path} is not a tlkit features file (no tlkit metadata)")
    return json.loads(meta[META_KEY])


def load_features(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Any, dict]:
    """(features by layer as (N, D) float32 arrays, a DataFrame of path/label/label_id/split, metadata)."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = shard_files(path)
    load_features_meta(files[0])  # a clear refusal for anything that is not a tlkit features file
    path = files[0]
    if path.suffix == ".npz":
        arrays = {}
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            rows = pd.DataFrame({k: z[k] for k in ("path", "label", "label_id", "split")})
            arrays = {name: z[f"features_{name}"].astype(np.float32) for name in meta["layers"]}
        return arrays, rows, meta
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f) for f in files])
    if table.schema.metadata is None or META_KEY not in table.schema.metadata:
        raise DataError(f"{path} is not a tlkit features file (no tlkit metadata)")
    arrays = _table_to_arrays(table)
    meta = json.loads(str(arrays.pop("__meta__")))
    rows = pd.DataFrame({k: arrays.pop(k) for k in ("path", "label", "label_id", "split")})
    return {k.removeprefix("features_"): v for k, v in arrays.items()}, rows, meta
