"""Batch feature extraction: the tap model and the chunked, resumable run over a dataset.

:func:`build_tap_model` turns a base and layer names into a raw-pixels-in, features-out
model; :func:`extract` runs it over every usable image, writing complete chunks as parts
and assembling the final Parquet (or NPZ) file at the end (the file format, the parts and
the readers live in :mod:`tlkit.features.store`). An interrupted run leaves only complete
parts, which ``resume`` keeps, so a resumed run writes the same rows in the same order as
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._lock import output_lock
from tlkit._signals import interrupts_noted
from tlkit.errors import AlreadyExistsError, DataError, ModelError
from tlkit.features.store import (
    FORMATS,
    _adopt_finished,
    _assemble,
    _check_same_extraction,
    _chunk_table,
    _done_paths,
    _part_path,
    _write_part,
)


@dataclass
class ExtractResult:
    path: Path
    rows: int
    new_rows: int
    skipped_files: int
    dims: dict[str, int]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.new_rows / self.seconds if self.seconds > 0 else float("nan")


def weights_fingerprint(model: Any) -> str:
    """A short SHA-256 of every weight of ``model`` (shapes and float bytes, in order): two
    networks with the same fingerprint compute the same features."""
    import hashlib

    import keras

    digest = hashlib.sha256()
    for w in model.weights:
        arr = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(arr.tobytes() if arr.ndim == 0 else memoryview(arr).cast("B"))
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Random initial weights drawn from ``seed``: the same network in every process.

    ``keras.utils.set_random_seed`` seeds Python, NumPy and TensorFlow; Python's and
    NumPy's global states are put back afterwards (TensorFlow's seed stays set).
    """
    if seed is None:
        yield
        return
    import random

    import keras

    py_state, np_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _refuse_repeated_taps(spec: Any, layers: Sequence[str], taps: Sequence[str], size: Sequence[int]) -> None:
    """Refuse a layer named twice, or two names (aliases or a raw name) for one layer (at a
    non-native size ``avg_pool``/``penultimate`` are the pooled ``top`` map): the file would hold
    the same features twice under two column names."""
    seen: dict[str, str] = {}
    native = tuple(size) == tuple(spec.input_shape[:2])
    for name, tap in zip(layers, taps):
        concrete = spec.resolve_layer(tap)
        if concrete in seen:
            first = seen[concrete]
            at = "" if native else f" at --input-size {size[0]} {size[1]}"
            what = (
                f"--layer {name} is given twice"
                if first == name
                else f"--layer {first} and --layer {name} are the same layer ({concrete}) of {spec.name}{at}"
            )
            raise ModelError(f"{what}; name each layer once")
        seen[concrete] = name


def build_tap_model(
    base: str,
    layers: Sequence[str],
    *,
    weights: str | None = "imagenet",
    input_size: tuple[int, int] | None = None,
    pooling: str = "avg",
    seed: int | None = None,
) -> tuple[Any, dict]:
    """Raw pixels -> the spec's preprocessing -> ``base`` -> the requested taps.

    The full model (with its classifier) is built at the native input size, so
    ``fc6``/``fc7``/``avg_pool`` exist; at another size only the convolutional body
    exists, and ``avg_pool``/``penultimate`` become the average-pooled ``top`` map
    (the same values); a tap in the head then raises :class:`ModelError` naming the
    head as the reason. With ``weights=None`` the random weights are drawn from
    ``seed`` (None: unseeded, and such features cannot be resumed or exported).
    Returns the model and the provenance metadata, with ``weights_seed`` and
    ``weights_sha256`` (:func:`weights_fingerprint`) that resume and export check.
    """
    import keras

    import tlkit
    from tlkit.features.taps import extractor, head_tap_error
    from tlkit.models.preprocessing import Preprocess

    spec = tlkit.get_spec(base)
    size = tuple(input_size) if input_size else tuple(spec.input_shape[:2])
    native = size == tuple(spec.input_shape[:2])
    weights_seed = seed if weights is None else None
    taps = []
    for tap in layers:
        if not native and tap in ("avg_pool", "penultimate") and "top" in spec.layers:
            taps.append(spec.layers["top"])  # average-pooled below: what avg_pool computes
        else:
            taps.append(tap)
    _refuse_repeated_taps(spec, layers, taps, size)  # before the network is built: a typo costs nothing
    with _seeded(weights_seed):
        net = tlkit.build(spec.name, weights=weights, include_top=native, input_shape=(*size, spec.input_shape[2]))
    try:
        tapped = extractor(net, taps, pooling=pooling, base=spec.name)
    except ModelError:
        reason = None if native else head_tap_error(spec, taps, net, size)  # type: ignore[arg-type]
        if reason is not None:
            raise reason from None
        raise
    inputs = keras.Input((*size, spec.input_shape[2]), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    outs = tapped(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    model = keras.Model(inputs, {name: o for name, o in zip(layers, outs)}, name=f"{spec.name}_features")
    meta = {
        "model": spec.name,
        "layers": list(layers),
        "resolved_layers": [spec.resolve_layer(t) for t in taps],
        "pooling": pooling,
        "preprocessing": spec.preprocessing,
        "input_size": list(size),
        "weights": weights,
        "weights_seed": weights_seed,
        "weights_sha256": weights_fingerprint(model),
        "tlkit_version": tlkit.__version__,
    }
    return model, meta


def extract(
    base: str,
    layers: Sequence[str],
    data: str,
    out: str | os.PathLike,
    *,
    weights: str | None = "imagenet",
    pooling: str = "avg",
    input_size: tuple[int, int] | None = None,
    batch_size: int = 32,
    chunk_rows: int = 1024,
    resume: bool = False,
    force: bool = False,
    val_split: float = 0.2,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool | None = None,
    stop_after_chunks: int | None = None,
    multi_label: bool = False,
) -> ExtractResult:
    """Extract ``layers`` of ``base`` for every usable image of ``data`` into ``out``.

    ``seed`` seeds the train/val split and, with ``weights=None``, the random weights
    (recorded in the metadata with the weights' fingerprint, so that ``resume`` and a
    probe's export rebuild exactly the same network, or refuse).
    ``out`` ends in ``.parquet`` or ``.npz``. Bad files are skipped and listed in
    ``OUT.skipped.csv``. ``stop_after_chunks`` stops early (as an interruption would),
    leaving the completed parts for ``resume``. ``out`` is locked for the run (a second process
    is refused); an existing ``out`` is replaced only once the new file is complete. ``multi_label``:
    label folders as multi-label data (:mod:`tlkit.data.multilabel_folders`); a multi-label source's
    rows have ``label`` as its names joined with ``|`` and ``label_id`` as its first label's id (-1: none).
    """
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DataError(f"output must end in .parquet or .npz, got {out.name!r}")
    if out.exists() and not (resume or force):
        raise AlreadyExistsError(f"{out} exists; pass --resume to add missing images or --force to replace it")
    # One process per output: a second one is refused here, before any model work.
    with output_lock(out):
        return _extract_locked(
            base,
            layers,
            data,
            out,
            fmt,
            weights=weights,
            pooling=pooling,
            input_size=input_size,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            resume=resume,
            force=force,
            val_split=val_split,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
            stop_after_chunks=stop_after_chunks,
            multi_label=multi_label,
        )


def _extract_locked(
    base: str,
    layers: Sequence[str],
    data: str,
    out: Path,
    fmt: str,
    *,
    weights: str | None,
    pooling: str,
    input_size: tuple[int, int] | None,
    batch_size: int,
    chunk_rows: int,
    resume: bool,
    force: bool,
    val_split: float,
    seed: int,
    cache_dir: str | None,
    progress: bool | None,
    stop_after_chunks: int | None,
    multi_label: bool = False,
) -> ExtractResult:
    """:func:`extract` with the output's lock held."""
    from tqdm import tqdm

    from tlkit.data import pipeline as tldata
    from tlkit.data import preflight

    parts = out.with_name(out.name + ".parts")
    # The model first: a layer that does not exist fails before the images are read.
    model, meta = build_tap_model(base, layers, weights=weights, input_size=input_size, pooling=pooling, seed=seed)
    source = tldata.resolve(data, val_split=val_split, seed=seed, cache_dir=cache_dir, multi_label=multi_label)
    if source.kind not in ("files", "records"):
        raise DataError(
            "feature extraction reads image files (a folder, CSV or builtin:) or a tlkit prepare folder; "
            "for TFDS data, export the images to a folder first"
        )
    report = preflight.check(source, progress=False)
    from tlkit.features.records_stream import extraction_batches, extraction_items

    items = extraction_items(source, report)
    meta.update({"data": data, "classes": list(source.classes), "seed": seed, "val_split": val_split})
    if source.multi_label:  # only then: a single-label extraction's metadata (and its resume check) is as before
        meta["multi_label"] = True
    # Every refusal comes before anything is written, and the old output stays until the new one is
    # complete (_assemble renames it into place): a refused or interrupted run leaves the file as it was.
    existing = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    if resume:
        # Parts left by an interrupted run already hold the finished file's rows (copied first) or
        # belong to the run that is replacing it; otherwise the finished file is the starting point.
        if existing:
            _check_same_extraction(existing[0], meta)
        elif out.exists():
            _check_same_extraction(out, meta)
            _adopt_finished(out, parts, fmt)
            existing = sorted(parts.glob("part-*.parquet"))
    else:  # a plain run or --force: parts of an earlier interrupted run are not reused
        for p in existing:
            p.unlink()
        existing = []
    parts.mkdir(parents=True, exist_ok=True)
    done = _done_paths(parts) if resume else set()
    todo = items[~items["path"].isin(done)].reset_index(drop=True)
    t0 = time.time()
    index = len(existing)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="img", desc=f"extract {','.join(layers)}", disable=not show)
    size = tuple(meta["input_size"])
    channels = int(model.input_shape[-1])
    written = 0
    # One dataset for the whole job (decoding runs ahead across chunks) and one predict function; each
    # part is written as soon as its rows are in. Batches never straddle parts, so a resumed run
    # (which starts at a part boundary) computes every batch exactly as an uninterrupted run does.
    ds = extraction_batches(source, todo, chunk_rows=chunk_rows, batch_size=batch_size, size=size, channels=channels)
    feats: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    got: list[str] = []
    failed: list[dict[str, str]] = []
    n_chunks = -(-len(todo) // chunk_rows)

    def flush(c: int) -> None:
        """Write chunk ``c`` (its rows that decoded); the others are listed as skipped."""
        nonlocal feats, got, index, written
        rows = todo.iloc[c * chunk_rows : (c + 1) * chunk_rows]
        ok = rows["path"].isin(set(got)).to_numpy()
        failed.extend(
            {
                "path": r.path,
                "reason": "undecodable",
                "detail": "the input pipeline could not decode it",
                "split": r.split,
                "label": r.label,
            }
            for r in rows[~ok].itertuples()
        )
        if ok.any():
            _write_part(
                _chunk_table(rows[ok], {k: np.concatenate(v) for k, v in feats.items()}, meta), _part_path(parts, index)
            )
            index += 1
            written += int(ok.sum())
        feats, got = {name: [] for name in layers}, []

    current, stopped = 0, False
    with interrupts_noted() as interrupted:
        for batch, paths, chunk in ds:
            if interrupted():  # a Ctrl-C whose KeyboardInterrupt was swallowed (see tlkit._signals)
                raise KeyboardInterrupt
            c = int(chunk[0])
            while current < c:  # chunk `current` is complete (every batch of a chunk comes before the next one's)
                flush(current)
                current += 1
            if stop_after_chunks is not None and index - len(existing) >= stop_after_chunks:
                stopped = True
                break
            y = model.predict_on_batch(batch)
            for name in layers:
                feats[name].append(np.asarray(y[name]))
            got.extend(p.decode() for p in paths.numpy())
            bar.update(int(batch.shape[0]))
    if not stopped:
        for c in range(current, n_chunks):
            flush(c)
    bar.close()
    seconds = time.time() - t0
    # Met by the decoder, not by the preflight: listed with the preflight's bad files.
    report.bad_files += [preflight.BadFile(**f) for f in failed]
    skipped = len(report.bad_files)
    finished = not stopped
    if finished:  # the list of skipped files goes with the output it describes: replaced with it
        skipped_csv = out.with_name(out.name + ".skipped.csv")
        if skipped:
            report.write_skipped_csv(skipped_csv)
        else:
            skipped_csv.unlink(missing_ok=True)  # an earlier extraction's list, not this one's
        _assemble(parts, out, fmt)
    dims = {name: int(np.prod(model.output[name].shape[1:])) for name in layers}  # outputs are keyed
    return ExtractResult(
        path=out if finished else parts,
        rows=len(done) + written,
        new_rows=written,
        skipped_files=skipped,
        dims=dims,
        seconds=seconds,
    )
