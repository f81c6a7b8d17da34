"""Prepared TFDS datasets as a :class:`~tlkit.data.sources.DataSource` (read from their directory,
no dataset code and no download)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.data.sources import (
    DEFAULT_TFDS_DATA_DIR,
    SPLITS,
    DataSource,
    _check_classes,
    _subdirs,
)
from tlkit.errors import DataError


def _split_top(text: str, sep: str = ":") -> list[str]:
    """Split on ``sep`` outside brackets, so ``train[:80%]`` stays whole."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in name.split("."))


def _find_prepared(data_dir: Path, name: str, version: str | None) -> Path:
    """The prepared directory ``DATA_DIR/NAME[/CONFIG]/VERSION`` holding ``dataset_info.json``."""

    def versions(d: Path) -> list[Path]:
        if not d.is_dir():
            return []
        vs = [v for v in d.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", v.name) and (v / "dataset_info.json").is_file()]
        return sorted(vs, key=lambda v: _version_key(v.name))

    base = data_dir / name
    found = versions(base)
    if not found and base.is_dir() and "/" not in name:
        configs = [c for c in _subdirs(base) if versions(c)]
        if len(configs) == 1:
            found = versions(configs[0])
        elif len(configs) > 1:
            raise DataError(
                f"TFDS dataset {name!r} in {data_dir} has several prepared configs "
                f"({', '.join(c.name for c in configs)}); pass tfds:{name}/CONFIG"
            )
    if version is not None:
        found = [v for v in found if v.name == version]
    if found:
        return found[-1]
    prepared = (
        sorted(
            {str(d.relative_to(data_dir).parent) for d in data_dir.glob("*/*/dataset_info.json")}
            | {str(d.relative_to(data_dir).parent.parent) for d in data_dir.glob("*/*/*/dataset_info.json")}
        )
        if data_dir.is_dir()
        else []
    )
    full = name + (f":{version}" if version else "")
    have = f" Prepared there: {', '.join(prepared)}." if prepared else ""
    raise DataError(
        f"TFDS dataset {full!r} is not prepared in {data_dir} (looked for {base}/VERSION/dataset_info.json).{have} "
        f"tlkit never downloads: on a machine with internet run `tfds build {name} --data_dir {data_dir}` "
        f"(or tfds.builder({name!r}).download_and_prepare()), copy the folder {name.split('/')[0]} into "
        f"{data_dir} here, and pass --tfds-data-dir {data_dir}"
    )


def from_tfds(spec: str, *, data_dir: str | None = None, val_split: float = 0.2, min_classes: int = 2) -> DataSource:
    """A TFDS dataset already prepared under ``data_dir`` (default ``$TFDS_DATA_DIR`` or ~/tensorflow_datasets).

    ``spec`` is ``tfds:NAME[/CONFIG][:VERSION][:TRAIN[:VAL[:TEST]]]``, the splits being TFDS
    split expressions (``train[:90%]``); NAME may also be the path of a prepared version folder
    (the one holding ``dataset_info.json``). Without splits: ``train``; ``validation`` if the
    dataset has one, else the last ``val_split`` of ``train`` (prepared TFDS data is already
    shuffled, so a tail slice is a random sample); ``test`` if present. The lookup is a
    directory check: an unprepared name fails at once and nothing is downloaded.
    """
    body = spec.removeprefix("tfds:")
    parts = _split_top(body)
    name, rest = parts[0].strip(), [x.strip() for x in parts[1:]]
    if not name:
        raise DataError(f"{spec}: no dataset name; use tfds:NAME, e.g. tfds:tf_flowers")
    version = rest.pop(0) if rest and re.fullmatch(r"\d+\.\d+\.\d+", rest[0]) else None
    if len(rest) > 3:
        raise DataError(f"{spec}: at most three splits (train, validation, test) after the name")
    ddir = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or DEFAULT_TFDS_DATA_DIR).expanduser().resolve()
    direct = Path(name).expanduser()
    if (direct / "dataset_info.json").is_file():  # tfds:/path/to/NAME/VERSION, a prepared folder itself
        prepared = direct.resolve()
    else:
        prepared = _find_prepared(ddir, name, version)

    import tensorflow_datasets as tfds  # only now: the directory exists, nothing will be fetched

    try:
        builder = tfds.builder_from_directory(str(prepared))
    except Exception as exc:  # a half-copied folder: unreadable metadata
        raise DataError(f"cannot read the prepared TFDS dataset in {prepared}: {exc}") from None
    info = builder.info
    image_key, label_key = _tfds_keys(info, spec)
    classes = list(info.features[label_key].names)
    _check_classes(classes, min_classes, f"TFDS dataset {name}", "label")
    available = list(info.splits.keys())
    splits: dict[str, str] = {}
    try:
        if rest:
            for tl, expr in zip(SPLITS, rest):
                if expr:
                    info.splits[expr]  # validates names and slices: raises on unknown
                    splits[tl] = expr
            how = "splits as given"
        else:
            if "train" not in available:
                raise DataError(
                    f"TFDS dataset {name} has no 'train' split (splits: {', '.join(available)}); "
                    f"name them: tfds:{name}:TRAIN[:VAL[:TEST]]"
                )
            n = info.splits["train"].num_examples
            if "validation" in available:
                splits["train"], splits["val"] = "train", "validation"
                how = "train / validation splits of the dataset"
            elif val_split > 0 and n >= 2:
                n_val = min(max(math.floor(n * val_split + 0.5), 1), n - 1)
                splits["train"], splits["val"] = f"train[:{n - n_val}]", f"train[{n - n_val}:]"
                how = f"last {n_val} of train ({val_split:.0%}) as validation"
            else:
                splits["train"] = "train"
                how = "train only"
            if "test" in available:
                splits["test"] = "test"
    except (KeyError, ValueError, AssertionError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{spec}: bad split ({exc}); the dataset's splits are: {', '.join(available)}") from None
    desc = (
        f"TFDS {builder.name} {builder.version} from {prepared}: {len(classes)} classes; "
        + ", ".join(f"{k}={v} ({info.splits[v].num_examples})" for k, v in splits.items())
        + f"; {how}"
    )
    return DataSource(
        spec=spec,
        kind="tfds",
        classes=classes,
        description=desc,
        root=str(prepared),
        split_method="tfds",
        tfds_splits=splits,
        image_key=image_key,
        label_key=label_key,
        _builder=builder,
    )


def _tfds_keys(info: Any, spec: str) -> tuple[str, str]:
    import tensorflow_datasets as tfds

    feats = info.features
    sk = info.supervised_keys
    if (
        isinstance(sk, (tuple, list))
        and len(sk) == 2
        and all(isinstance(k, str) for k in sk)
        and isinstance(feats[sk[0]], tfds.features.Image)
        and isinstance(feats[sk[1]], tfds.features.ClassLabel)
    ):
        return sk[0], sk[1]
    images = [k for k, f in feats.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in feats.items() if isinstance(f, tfds.features.ClassLabel)]
    if len(images) == 1 and len(labels) == 1:
        return images[0], labels[0]
    raise DataError(
        f"{spec}: need exactly one Image and one ClassLabel feature to classify; the dataset has "
        f"images {images or 'none'} and class labels {labels or 'none'} "
        f"(features: {', '.join(feats.keys())})"
    )


def tfds_class_counts(source: DataSource, split: str) -> dict[str, int]:
    """Per-class example counts of one split of a TFDS source (reads labels only, images undecoded)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    b = source.builder()
    ds = b.as_dataset(
        split=source.tfds_splits[split], shuffle_files=False, decoders={source.image_key: tfds.decode.SkipDecoding()}
    )
    ds = ds.map(lambda ex: tf.cast(ex[source.label_key], tf.int64)).batch(8192)
    counts = np.zeros(len(source.classes), dtype=np.int64)
    for y in ds.as_numpy_iterator():
        counts += np.bincount(y, minlength=len(source.classes))[: len(source.classes)]
    return {c: int(n) for c, n in zip(source.classes, counts)}
