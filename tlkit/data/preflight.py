"""Data preflight: look at every file before training, so that nothing fails (or vanishes) mid-run.

:func:`check` opens every file of a file source with :func:`tlkit.data.images.load_rgb` (in a
thread pool: PIL releases the GIL while decoding) and reports class counts per split,
image sizes and modes, bad files (corrupt, truncated, empty, not an image, too large:
skipped, each listed with its reason), duplicate files (same content, by SHA-256) within
a split, and duplicates across splits (validation leakage). Bad files are not fatal:
:meth:`Report.clean_items` leaves them out and the report says how many. A class left
with no usable file is a :class:`tlkit.data.pipeline.DataError`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from tlkit.data.file_checks import check_files, source_key
from tlkit.data.images import ImageError, decode_rgb, open_regular, read_header
from tlkit.data.jpeg_check import jpeg_structure_problem
from tlkit.data.pipeline import SPLITS, DataSource, tfds_class_counts
from tlkit.data.report import TEXT_LIST_LIMIT, BadFile, DuplicateGroup, Leak, Report  # noqa: F401  (re-exported)
from tlkit.data.sources import count_table
from tlkit.errors import ConfigError, DataError

# What a run does with validation/test files identical to earlier-split files (see apply_leak_policy).
LEAK_POLICIES = ("drop", "keep", "fail")
DEFAULT_LEAK_POLICY = "drop"
LEAKS_HELP = (
    "validation/test files identical to training files: drop leaves them out (the default: a copy of a "
    "training image in validation inflates validation accuracy), keep keeps them, fail stops with "
    "exit status 2"
)


def inspect_file(path: str) -> dict[str, Any]:
    """Decode one file fully (the only way to find truncation); its size, mode and content hash.

    The file is opened once, and only if it is a regular file (a FIFO would block forever).
    """
    try:
        with open_regular(path) as f:
            arr, mode, fmt, orientation = decode_rgb(f, path)
            h, w = arr.shape[:2]
            del arr
            f.seek(0)
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except ImageError as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except Exception as exc:  # noqa: BLE001  (PIL raises many kinds on garbage: skip the file, do not stop the check)
        return {"ok": False, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    return _usable(h, w, mode, fmt, orientation, digest.hexdigest())


def _usable(h: int, w: int, mode: str, fmt: str, orientation: int, sha256: str) -> dict[str, Any]:
    """The record of a file the run can use: upright size, mode, format, EXIF orientation, content hash."""
    return {"ok": True, "h": h, "w": w, "mode": mode, "format": fmt, "orientation": orientation, "sha256": sha256}


def inspect_header(path: str) -> dict[str, Any]:
    """:func:`inspect_file` without decoding JPEGs, which the input pipeline decodes anyway.

    A JPEG is judged by its header (format, size, pixel bound, mode) and its segments
    (:func:`tlkit.data.jpeg_check.jpeg_structure_problem`: tables libjpeg would refuse are
    ``corrupt``; a file cut short has no end-of-image marker and is ``truncated``); its
    bytes are still hashed for the duplicate and leak checks (reading is cheap, decoding a
    camera photo is not: 1.6 ms against 117 ms for a 3000x2250 photo, measured). Damage
    inside the entropy-coded data is not seen here, but it is not seen by a full decode
    either: libjpeg (PIL's and TensorFlow's) decodes it with a warning and garbled pixels.
    What the decoder still refuses is skipped and listed by the caller's pipeline
    (``tlkit extract``) or skipped (``skip_undecodable``). Other formats (small, and cheap
    to decode) are decoded in full as :func:`inspect_file` does.
    """
    try:
        with open_regular(path) as f:
            head = f.read(3)
            f.seek(0)
            if head != b"\xff\xd8\xff":
                return inspect_file(path)
            data = f.read()
            problem = jpeg_structure_problem(data)  # first: a header cut short is "truncated", as PIL says
            if problem is not None:
                return {"ok": False, "reason": "truncated" if "truncated" in problem else "corrupt", "detail": problem}
            f.seek(0)
            h, w, mode, fmt, orientation = read_header(f, path)
    except ImageError as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except (OSError, MemoryError) as exc:  # an error while reading: skip the file, do not stop the check
        return {"ok": False, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    return {**_usable(h, w, mode, fmt, orientation, hashlib.sha256(data).hexdigest()), "decoded": False}


def check(
    source: DataSource,
    *,
    progress: bool = True,
    workers: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    thorough: bool = False,
) -> Report:
    """Check a data source; see the module docstring. Raises :class:`DataError` when unusable.

    ``sample``: decode only a seeded random sample of that many files (for millions of
    images, where decoding every file twice costs hours). The others count as usable,
    unchecked: the training pipeline then skips any of them that does not decode
    (``make_dataset(skip_undecodable=True)``), and duplicates and leaks are looked for
    among the sampled files only. The report says so.

    ``cache``: a file unchanged since an earlier check (same size, times and inode) is not
    read again; its remembered result is used (:mod:`tlkit.data.file_checks`).

    ``thorough``: decode every file in full (``tlkit check-data``). Otherwise JPEGs are
    checked from their headers and markers (:func:`inspect_header`) and decoded once, by
    the input pipeline, not twice; a header-only result is not reused by a thorough check.
    """
    if source.kind == "tfds":
        return _check_tfds(source)
    if source.kind == "records":  # checked when prepared; thorough verifies each shard's checksum
        from tlkit.data.records_source import records_report

        return records_report(source, thorough=thorough)
    assert source.items is not None
    t0 = time.perf_counter()
    items = source.items
    paths = items["path"].astype(str).tolist()
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    if sample is not None and sample < 1:
        raise DataError(f"--check-sample must be at least 1, got {sample}")
    chosen = (
        np.sort(np.random.default_rng(seed).choice(len(paths), sample, replace=False))
        if sample is not None and sample < len(paths)
        else np.arange(len(paths))
    )
    results: list[dict[str, Any]] = [_UNCHECKED] * len(paths)
    n_reused = check_files(
        paths,
        chosen,
        results,
        inspect_file if thorough else inspect_header,
        workers=workers,
        progress=progress,
        cache_key=source_key(source.spec) if cache else None,
        cache_dir=cache_dir,
        need_decoded=thorough,
    )
    ok = np.array([r["ok"] for r in results], dtype=bool)
    labels = items["label"].tolist()
    splits = items["split"].tolist()
    bad = [
        BadFile(path=p, reason=r["reason"], detail=r["detail"], split=s, label=lab)
        for p, r, s, lab in zip(paths, results, splits, labels)
        if not r["ok"]
    ]

    in_splits = set(splits)
    present = [s for s in SPLITS if s in in_splits]
    class_counts = count_table(items[ok], present, source.classes)
    _fail_on_empty(source, class_counts, bad)

    report = Report(
        spec=source.spec,
        description=source.description,
        kind="files",
        classes=list(source.classes),
        split_method=source.split_method,
        class_counts=class_counts,
        n_files=len(paths),
        bad_files=bad,
        ignored=list(source.ignored),
        source_warnings=list(source.warnings),
        _items=items,
        _ok=ok,
        n_checked=len(chosen),
        n_reused=n_reused,
    )
    if source.multi_label:  # images per split, labels per image, label pairs (class_counts are positives)
        from tlkit.data.multilabel_report import attach

        attach(report, items[ok])
    good_results = [r for r in results if r["ok"] and "h" in r]
    if good_results:
        hs = np.array([r["h"] for r in good_results])
        ws = np.array([r["w"] for r in good_results])
        report.image_sizes = {
            k: {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}
            for k, v in (("height", hs), ("width", ws))
        }
        report.modes = dict(Counter(r["mode"] or "?" for r in good_results).most_common())
        report.formats = dict(Counter(r["format"] or "?" for r in good_results).most_common())
        report.n_turned = sum(r.get("orientation", 1) != 1 for r in good_results)
    report.duplicates, report.leaks = _duplicates(
        [(p, s, lab, r["sha256"]) for p, s, lab, r in zip(paths, splits, labels, results) if "sha256" in r]
    )
    report.warnings = _warnings(report)
    report.seconds = time.perf_counter() - t0
    return report


_UNCHECKED: dict[str, Any] = {"ok": True, "unchecked": True}  # outside a --check-sample: assumed usable


def _counts(items: pd.DataFrame, report: Report) -> dict[str, dict[str, int]]:
    return count_table(items, list(report.class_counts), report.classes)


def _fail_on_empty(source: DataSource, counts: dict[str, dict[str, int]], bad: list[BadFile]) -> None:
    total = {c: sum(counts[s][c] for s in counts) for c in source.classes}
    empty = [c for c, n in total.items() if n == 0]
    if empty and source.kind == "files":  # a TFDS ClassLabel may name unused classes: a warning there
        reasons = Counter(b.reason for b in bad if b.label in empty)
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        raise DataError(
            f"class(es) {', '.join(repr(c) for c in empty)} have no usable image after skipping bad "
            f"files ({why}); fix or remove them (first: "
            f"{next(b.path + ': ' + b.reason for b in bad if b.label in empty)})"
        )
    if "train" not in counts or sum(counts["train"].values()) == 0:
        raise DataError(f"{source.spec} has no usable training images")


def _duplicates(rows: list[tuple[str, str, str, str]]) -> tuple[list[DuplicateGroup], list[Leak]]:
    """Group usable files by content: groups within a split, and cross-split pairs (leaks).

    Each later-split copy is paired with the first copy of the earliest split, so a group of
    n identical files gives at most n leaks, not n^2.
    """
    by_hash: dict[str, list[tuple[str, str, str]]] = {}
    for path, split, label, sha in rows:
        by_hash.setdefault(sha, []).append((path, split, label))
    groups: list[DuplicateGroup] = []
    leaks: list[Leak] = []
    order = {s: i for i, s in enumerate(SPLITS)}
    for sha, files in by_hash.items():
        if len(files) < 2:
            continue
        files.sort(key=lambda f: (order.get(f[1], 9), f[0]))
        for s in SPLITS:
            in_s = [f for f in files if f[1] == s]
            if len(in_s) > 1:
                groups.append(
                    DuplicateGroup(sha256=sha, split=s, paths=[f[0] for f in in_s], labels=[f[2] for f in in_s])
                )
        first = files[0]
        for f in files[1:]:
            if f[1] != first[1]:
                leaks.append(
                    Leak(
                        sha256=sha,
                        path_a=first[0],
                        split_a=first[1],
                        label_a=first[2],
                        path_b=f[0],
                        split_b=f[1],
                        label_b=f[2],
                    )
                )
    groups.sort(key=lambda g: (order[g.split], g.paths[0]))
    leaks.sort(key=lambda lk: (order[lk.split_b], lk.path_b))
    return groups, leaks


def _warnings(r: Report) -> list[str]:
    out = list(r.source_warnings)
    counts = r.class_counts
    if r.multilabel is not None:  # per label; several labels on one image are not a conflict
        from tlkit.data.multilabel_report import warnings as label_warnings

        out += label_warnings(r)
    for c in r.classes if r.multilabel is None else []:
        if "train" in counts and counts["train"].get(c, 0) == 0:
            out.append(f"class {c!r} has no training images: the model cannot learn it")
        elif "val" in counts and counts["val"].get(c, 0) == 0:
            out.append(f"class {c!r} has no validation images: its validation metrics will be missing")
    train = counts.get("train", {})
    nonzero = [n for n in train.values() if n > 0]
    if len(nonzero) >= 2 and max(nonzero) >= 5 * min(nonzero) and r.multilabel is None:
        out.append(
            f"classes are imbalanced in train ({min(nonzero)} to {max(nonzero)} images): consider "
            "--class-weight auto, and read the per-class metrics"
        )
    conflicts = [g for g in r.duplicates if len(set(g.labels)) > 1] + [lk for lk in r.leaks if lk.label_a != lk.label_b]
    if conflicts and r.multilabel is None:
        out.append(f"{len(conflicts)} duplicate(s) carry different labels: the same image is labelled twice")
    if r.leaks and r.leak_policy == "keep":
        out.append(
            f"{len(r.leaks)} validation/test image(s) identical to earlier-split images are kept "
            "(--leaks keep): they inflate the validation metrics; remove them, or pass --leaks drop"
        )
    elif r.leaks and r.leak_policy != "drop":  # drop: done, and said by apply_leak_policy's message
        out.append(
            "validation/test images identical to earlier-split images inflate the metrics; remove the "
            "copies listed under leakage, or let the run leave them out (tlkit finetune --leaks drop, "
            "the default)"
        )
    return out


def apply_leak_policy(
    report: Report, policy: str = DEFAULT_LEAK_POLICY, *, context: str = "this run"
) -> tuple[pd.DataFrame | None, str]:
    """Apply a leak policy to a checked source: (the items a run uses, a message to print, "" if none).

    ``drop`` leaves the later-split copies out and updates the report so that its class
    counts are the ones used (the copies are counted in ``report.dropped``); ``keep`` keeps
    them (the report warns); ``fail`` raises :class:`DataError` naming the count and the
    flag. The items are ``None`` for a TFDS source (no file list, no file-level leak check).
    ``context`` names who uses the items in the message (``this run``; ``tlkit finetune``
    for check-data).
    """
    if policy not in LEAK_POLICIES:
        raise ConfigError(f"--leaks must be one of {', '.join(LEAK_POLICIES)}, got {policy!r}")
    report.leak_policy = policy
    if report.kind == "records":  # leaks were handled when prepared (tlkit prepare --leaks)
        return report._items, ""
    if report.kind != "files":
        return None, ""
    assert report._items is not None and report._ok is not None
    usable, used = (report._items[report._keep(drop)] for drop in (False, policy == "drop"))
    # From the file list every time (not from class_counts): applying a policy twice gives the same report.
    before, after = _counts(usable, report), _counts(used, report)
    if report.multilabel is not None:
        from tlkit.data.multilabel_report import attach

        attach(report, used, usable[~usable.index.isin(used.index)])
    report.class_counts = after
    report.dropped = {
        s: gone
        for s in before
        if (gone := {c: before[s][c] - after[s][c] for c in report.classes if before[s][c] > after[s][c]})
    }
    report.warnings = _warnings(report)
    report.leak_note = ""
    if not report.leaks:
        return used.reset_index(drop=True), ""
    n = len(report.leaks)
    which = "/".join(
        w for s, w in (("val", "validation"), ("test", "test")) if any(lk.split_b == s for lk in report.leaks)
    )
    if policy == "fail":
        first = report.leaks[0]
        raise DataError(
            f"{n} {which} file(s) are identical to earlier-split files (first: {first.path_b} = "
            f"{first.path_a}); --leaks fail stops here: remove them, or pass --leaks drop to leave them "
            f"out (the default) or --leaks keep to keep them (tlkit check-data {report.spec} lists them all)"
        )
    if policy == "keep":
        report.leak_note = (
            f"--leaks keep: {n} {which} file(s) identical to earlier-split files stay in {context} "
            "and in its counts; they inflate validation accuracy (--leaks drop leaves them out)"
        )
    else:
        where = "; ".join(f"{s}: " + ", ".join(f"{c} {k}" for c, k in by.items()) for s, by in report.dropped.items())
        report.leak_note = (
            f"--leaks drop: {report.n_dropped} {which} file(s) identical to earlier-split files "
            f"({where}) are left out of {context} and of its counts; nothing is left to remove by "
            "hand (--leaks keep keeps them, --leaks fail stops instead)"
        )
    return used.reset_index(drop=True), report.leak_note


def _check_tfds(source: DataSource) -> Report:
    t0 = time.perf_counter()
    b = source.builder()
    counts = {s: tfds_class_counts(source, s) for s in source.splits()}
    report = Report(
        spec=source.spec,
        description=source.description,
        kind="tfds",
        classes=list(source.classes),
        split_method=source.split_method,
        class_counts=counts,
        n_files=sum(sum(c.values()) for c in counts.values()),
        files_checked=False,
        source_warnings=list(source.warnings),
    )
    shape = b.info.features[source.image_key].shape
    if shape and shape[0] is not None and shape[1] is not None:
        report.image_sizes = {
            "height": {"min": shape[0], "median": shape[0], "max": shape[0]},
            "width": {"min": shape[1], "median": shape[1], "max": shape[1]},
        }
    _fail_on_empty(source, counts, [])
    report.warnings = _warnings(report)
    report.seconds = time.perf_counter() - t0
    return report
