"""``tlkit prepare``: decode, check, turn upright and resize a dataset once, into sharded TFRecord files.

Each image goes through the input pipeline's own decoder (:func:`tlkit.data.decode.decode_file`:
EXIF orientation applied) and resizer (:mod:`tlkit.data.resize`), then is stored as a JPEG at the
chosen size and quality, with its label, its split and a key. Splits are the source's (folders,
manifest, or the seeded ``--val-split``), frozen in the records: a later run on the prepared folder
uses exactly them. Within a split the order is a seeded shuffle, so every shard holds every class
(a worker that reads only some shards still sees all classes).

Layout of the prepared folder: ``SPLIT-00000-of-0000N.tfrecord`` files and ``tlkit-prepared.json``
(:data:`MANIFEST`: classes, counts, size, shards with their SHA-256, the items, the skipped files),
written last. Everything is written to a temporary folder beside the destination (uploaded, manifest
last, for ``gs://``/``s3://``) and moved into place when complete: a prepare that is interrupted
leaves no manifest, hence nothing that looks like a prepared folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import move_into_place, write_text_atomic
from tlkit.data.sources import SPLITS
from tlkit.errors import AlreadyExistsError, ConfigError, DataError
from tlkit.storage import remote

MANIFEST = "tlkit-prepared.json"
FORMAT = "tlkit-prepared"
FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 1000
DEFAULT_QUALITY = 90


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def check_options(size: list[int], quality: int, shard_size: int | None, shards: int | None) -> None:
    """Refuse impossible values before anything is read."""
    if len(size) not in (1, 2) or any(int(v) < 1 for v in size):
        raise ConfigError(f"--size takes one number (the shorter side) or two (height width), all >= 1; got {size}")
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"--quality must be 1..100, got {quality}")
    if shard_size is not None and shards is not None:
        raise ConfigError("--shard-size and --shards both set the number of shards: pass one of them")
    if (shard_size is not None and shard_size < 1) or (shards is not None and shards < 1):
        raise ConfigError("--shard-size and --shards must be at least 1")


def _destination_state(out: str) -> str:
    """``"absent"``, ``"empty"`` or ``"used"`` (holds files)."""
    if remote.is_remote(out):
        fs = remote.filesystem(out)
        try:
            return "used" if fs.find(out.rstrip("/"), maxdepth=1) else "absent"
        except FileNotFoundError:
            return "absent"
        except OSError as e:
            raise remote.storage_error(out, e, "list") from e
    p = Path(out)
    if not p.exists():
        return "absent"
    if not p.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder")
    return "used" if any(p.iterdir()) else "empty"


def _encoded(paths: list[str], size: list[int], quality: int) -> Any:
    """(JPEG bytes, position) for each path that decodes, in order; one that does not is left out."""
    import tensorflow as tf

    from tlkit.data import resize as rs
    from tlkit.data.decode import decode_file, decode_need, with_threading

    fixed = len(size) == 2
    need = decode_need((size[0], size[1]) if fixed else (size[0], size[0]))

    def encode(p: Any, i: Any) -> Any:
        img = decode_file(p, need)
        x = rs.resize(img, (size[0], size[1])) if fixed else rs.to_shorter(img, size[0])
        x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
        return tf.io.encode_jpeg(x, quality=int(quality)), i

    ds = tf.data.Dataset.from_tensor_slices((paths, np.arange(len(paths), dtype=np.int64)))
    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    return with_threading(ds.prefetch(tf.data.AUTOTUNE)).as_numpy_iterator()


def _example(jpeg: bytes, label: int, key: int, path: str) -> bytes:
    import tensorflow as tf

    f = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": f(bytes_list=tf.train.BytesList(value=[jpeg])),
                "label": f(int64_list=tf.train.Int64List(value=[label])),
                "key": f(int64_list=tf.train.Int64List(value=[key])),
                "path": f(bytes_list=tf.train.BytesList(value=[path.encode()])),
            }
        )
    ).SerializeToString(deterministic=True)  # map fields in a fixed order: the same bytes every run


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_split(
    tmp: Path, split: str, items: Any, key0: int, n_shards: int, size: list[int], quality: int, bar: Any, say: Any
) -> tuple[dict, list[dict]]:
    """Write one split's shards into ``tmp``; returns (its manifest entry, the files the decoder refused)."""
    import tensorflow as tf

    paths = items["path"].astype(str).tolist()
    labels = items["label_id"].to_numpy()
    n = len(paths)
    bounds = [j * n // n_shards for j in range(n_shards + 1)]
    shard_of = np.searchsorted(bounds, np.arange(n), side="right") - 1
    names = [shard_name(split, j, n_shards) for j in range(n_shards)]
    writers = [tf.io.TFRecordWriter(str(tmp / name)) for name in names]
    counts = [0] * n_shards
    rows, seen = [], np.zeros(n, dtype=bool)
    try:
        for jpeg, i in _encoded(paths, size, quality):
            j = int(shard_of[i])
            writers[j].write(_example(jpeg, int(labels[i]), key0 + int(i), paths[i]))
            counts[j] += 1
            seen[i] = True
            rows.append([key0 + int(i), int(labels[i]), j, paths[i]])
            bar.update(1)
            if i + 1 == bounds[j + 1]:
                say(f"wrote {names[j]} ({counts[j]} images)")
    finally:
        for w in writers:
            w.close()
    refused = [
        {"path": paths[i], "reason": "undecodable", "detail": "the input pipeline could not decode it"}
        for i in np.flatnonzero(~seen)
    ]
    shards = [
        {"file": name, "images": c, "bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
        for name, c in zip(names, counts)
    ]
    return {"images": int(seen.sum()), "shards": shards, "items": rows}, refused


@contextlib.contextmanager
def _workspace(out: str) -> Iterator[Path]:
    """A temporary folder for the output (beside a local ``out``, so the final move is a rename);
    removed on any failure. Partial folders left by killed runs are removed first."""
    if remote.is_remote(out):
        tmp = Path(tempfile.mkdtemp(prefix="tlkit-prepare-"))
    else:
        dest = Path(out)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for old in dest.parent.glob(f".{dest.name}.partial-*"):  # we hold the lock: these are dead runs'
            shutil.rmtree(old, ignore_errors=True)
        tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
        tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, out: str, replace: bool) -> None:
    """Move the complete output into place: the manifest arrives last."""
    if remote.is_remote(out):
        from tlkit.storage.transfer import upload_tree

        if replace:
            fs = remote.filesystem(out)
            with contextlib.suppress(FileNotFoundError):
                fs.rm(remote.join(out, MANIFEST))  # first: the old folder stops looking complete
                fs.rm(out.rstrip("/"), recursive=True)
        upload_tree(tmp, out.rstrip("/"), last=[MANIFEST])
        return
    dest = Path(out)
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    if dest.exists():
        move_into_place(dest, old)  # readers see the old folder, then (after a moment with none) the new one
    move_into_place(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def prepare(
    src: str,
    out: str,
    *,
    size: list[int],
    quality: int = DEFAULT_QUALITY,
    shard_size: int | None = None,
    shards: int | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    leaks: str = "drop",
    force: bool = False,
    cache_dir: str | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Prepare ``src`` into ``out`` (see the module docstring); returns the manifest written."""
    from tqdm import tqdm

    import tlkit
    from tlkit._lock import output_lock
    from tlkit.data import preflight
    from tlkit.data.sources import resolve

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    size = [int(v) for v in size]
    check_options(size, quality, shard_size, shards)
    remote.check_scheme(out)
    out = out if remote.is_remote(out) else remote.local_path(out)
    state = _destination_state(out)
    if state == "used" and not force:
        raise AlreadyExistsError(f"--out {out} already holds files; pass --force to replace it, or another --out")
    source = resolve(src, val_split=val_split, seed=seed, cache_dir=cache_dir)
    if source.kind != "files":
        raise DataError(f"{src} is not a folder, CSV manifest or builtin: dataset; tlkit prepare reads image files")
    if source.multi_label:
        from tlkit.data.multilabel import refuse

        refuse("tlkit prepare (prepared records hold one label per image)")
    lock = contextlib.nullcontext() if remote.is_remote(out) else output_lock(out)
    with lock, _workspace(out) as tmp:
        t0 = time.perf_counter()
        show = sys.stderr.isatty() if progress is None else progress
        report = preflight.check(source, progress=show, seed=seed)
        items, _ = preflight.apply_leak_policy(report, leaks, context="the prepared records")
        say(report.to_text())
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tlkit_version": tlkit.__version__,
            "source": str(src),
            "source_description": source.description,
            "split_method": source.split_method,
            "val_split": val_split,
            "seed": seed,
            "classes": list(source.classes),
            "size": size,
            "size_mode": "fixed" if len(size) == 2 else "shorter",
            "quality": int(quality),
            "splits": {},
        }
        skipped = [{"path": b.path, "reason": b.reason, "detail": b.detail} for b in report.bad_files]
        bar = tqdm(total=len(items), unit="img", desc="prepare", disable=not show, file=sys.stderr)
        rng = np.random.default_rng(seed)
        key0 = 0
        for split in SPLITS:
            part = items[items["split"] == split].sort_values("path", kind="stable")
            if part.empty:
                continue
            part = part.iloc[rng.permutation(len(part))].reset_index(drop=True)  # every shard holds every class
            n_shards = shards or math.ceil(len(part) / (shard_size or DEFAULT_SHARD_SIZE))
            n_shards = max(1, min(n_shards, len(part)))
            entry, refused = _write_split(tmp, split, part, key0, n_shards, size, quality, bar, say)
            for r in refused:
                r.update(split=split, label=str(part.loc[part["path"] == r["path"], "label"].iloc[0]))
            skipped += refused
            kept = {r[3] for r in entry["items"]}
            entry["counts"] = {c: int(((part["label"] == c) & part["path"].isin(kept)).sum()) for c in source.classes}
            manifest["splits"][split] = entry
            key0 += len(part)
        bar.close()
        if refused_all := [s for s in skipped if s["reason"] == "undecodable"]:
            say(f"skipped {len(refused_all)} file(s) the decoder refused: " + ", ".join(s["path"] for s in refused_all))
        manifest["skipped"] = skipped
        manifest["num_shards"] = sum(len(e["shards"]) for e in manifest["splits"].values())
        manifest["images"] = sum(e["images"] for e in manifest["splits"].values())
        manifest["seconds"] = round(time.perf_counter() - t0, 3)
        write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1))  # last: only a complete folder has one
        _publish(tmp, out, replace=state != "absent")
    return manifest
