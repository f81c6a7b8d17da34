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

import csv
import hashlib
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlkit.data.file_checks import check_files, source_key
from tlkit.data.images import ImageError, decode_rgb, open_regular, read_header
from tlkit.data.jpeg_check import jpeg_structure_problem
from tlkit.data.pipeline import SPLITS, DataSource, tfds_class_counts
from tlkit.errors import ConfigError, DataError

# How many entries of each list the text report shows; JSON and skipped.csv have them all.
TEXT_LIST_LIMIT = 20

# What a run does with validation/test files identical to earlier-split files (see apply_leak_policy).
LEAK_POLICIES = ("drop", "keep", "fail")
DEFAULT_LEAK_POLICY = "drop"
LEAKS_HELP = ("validation/test files identical to training files: drop leaves them out (the default: a copy of a "
              "training image in validation inflates validation accuracy), keep keeps them, fail stops with "
              "exit status 2")


@dataclass
class BadFile:
    """A file left out of the run, with the reason (an :class:`ImageError` reason code)."""

    path: str
    reason: str
    detail: str
    split: str
    label: str


@dataclass
class DuplicateGroup:
    """Files of one split with identical bytes."""

    sha256: str
    split: str
    paths: list[str]
    labels: list[str]


@dataclass
class Leak:
    """A file in a later split (``b``: val or test) identical to one in an earlier split (``a``)."""

    sha256: str
    path_a: str
    split_a: str
    label_a: str
    path_b: str
    split_b: str
    label_b: str


@dataclass
class Report:
    """The preflight's findings; ``to_text()`` for people, ``to_dict()`` for JSON."""

    spec: str
    description: str
    kind: str
    classes: list[str]
    split_method: str
    class_counts: dict[str, dict[str, int]]  # split -> class -> usable examples
    n_files: int = 0
    n_checked: int | None = None  # files decoded; fewer than n_files with a sampled check
    n_reused: int = 0  # of those, unchanged since an earlier check and not read again
    files_checked: bool = True
    bad_files: list[BadFile] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    image_sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Set by apply_leak_policy: the policy ("" before), and the leaked copies it left out (split -> class -> n),
    # which class_counts no longer include.
    leak_policy: str = ""
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    leak_note: str = ""  # what the policy did, in words (the text report's last line)
    source_warnings: list[str] = field(default_factory=list, repr=False)
    _items: pd.DataFrame | None = field(default=None, repr=False)
    _ok: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_skipped(self) -> int:
        return len(self.bad_files)

    @property
    def n_usable(self) -> int:
        """Examples a run uses: usable files, less any leaked copies the leak policy dropped."""
        return sum(sum(c.values()) for c in self.class_counts.values())

    @property
    def n_dropped(self) -> int:
        return sum(sum(c.values()) for c in self.dropped.values())

    def clean_items(self, *, drop_leaks: bool = False) -> pd.DataFrame:
        """The source's items without the bad files (and, with ``drop_leaks``, without the
        val/test copies of files that are also in an earlier split)."""
        return self._items[self._keep(drop_leaks)].reset_index(drop=True)

    def _keep(self, drop_leaks: bool) -> np.ndarray:
        if self._items is None or self._ok is None:
            raise DataError("clean_items() is for file sources; a TFDS source has no file list")
        keep = self._ok.copy()
        if drop_leaks and self.leaks:
            leaked = {(lk.path_b, lk.split_b) for lk in self.leaks}
            pairs = zip(self._items["path"], self._items["split"])
            keep &= np.array([(p, s) not in leaked for p, s in pairs], dtype=bool)
        return keep

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-ready data."""
        return {
            "spec": self.spec, "description": self.description, "kind": self.kind, "classes": list(self.classes),
            "split_method": self.split_method, "files_checked": self.files_checked, "n_files": self.n_files,
            "n_checked": self.n_checked if self.n_checked is not None else self.n_files,
            "n_reused": self.n_reused,
            "n_usable": self.n_usable, "n_skipped": self.n_skipped, "n_dropped": self.n_dropped,
            "leak_policy": self.leak_policy, "class_counts": self.class_counts, "dropped_counts": self.dropped,
            "bad_files": [asdict(b) for b in self.bad_files],
            "duplicates": [asdict(d) for d in self.duplicates], "leaks": [asdict(lk) for lk in self.leaks],
            "ignored": list(self.ignored), "image_sizes": self.image_sizes, "modes": self.modes,
            "formats": self.formats, "warnings": list(self.warnings), "leak_note": self.leak_note,
            "seconds": round(self.seconds, 3),
        }

    def to_text(self) -> str:
        """A short human report: counts table, sizes, and each problem list (first 20 entries)."""
        lines = [f"data: {self.description}"]
        if self.files_checked and self.n_checked is not None and self.n_checked < self.n_files:
            lines.append(f"checked a sample of {self.n_checked} of {self.n_files} files in {self.seconds:.1f} s "
                         f"(--check-sample): {self.n_usable} usable, {self.n_skipped} skipped; the other "
                         f"{self.n_files - self.n_checked} files are used unchecked (one that does not decode is "
                         f"skipped by the input pipeline, with a warning), and duplicates and leaks are only "
                         f"looked for in the sample")
        elif self.files_checked:
            lines.append(f"checked {self.n_files} files in {self.seconds:.1f} s: {self.n_usable} usable, "
                         f"{self.n_skipped} skipped" + (" (left out; the run goes on)" if self.n_skipped else "")
                         + (f", {self.n_dropped} dropped (copies of earlier-split files, --leaks drop)"
                            if self.n_dropped else "")
                         + (f"; {self.n_reused} unchanged since an earlier check (not read again)"
                            if self.n_reused else ""))
        else:
            lines.append(f"{self.n_files} examples; file checks skipped for a TFDS source "
                         "(TFDS validated the records when it prepared them)")
        splits = [s for s in SPLITS if s in self.class_counts]
        if splits:
            width = max([7 if self.n_dropped else 5] + [len(c) for c in self.classes])
            lines.append(f"  {'class':<{width}}" + "".join(f"{s:>8}" for s in splits))
            for c in self.classes:
                lines.append(f"  {c:<{width}}" + "".join(f"{self.class_counts[s].get(c, 0):>8}" for s in splits))
            lines.append(f"  {'total':<{width}}" + "".join(f"{sum(self.class_counts[s].values()):>8}" for s in splits))
            if self.n_dropped:
                lines.append(f"  {'dropped':<{width}}" + "".join(f"{sum(self.dropped.get(s, {}).values()):>8}"
                                                                 for s in splits)
                             + "  (leaked copies, --leaks drop: not in the counts above)")
        if self.image_sizes:
            hs, ws = self.image_sizes["height"], self.image_sizes["width"]
            txt = (f"image sizes: height {hs['min']:g}..{hs['max']:g} (median {hs['median']:g}), "
                   f"width {ws['min']:g}..{ws['max']:g} (median {ws['median']:g})")
            if self.modes:
                txt += "; modes " + ", ".join(f"{k} {v}" for k, v in self.modes.items())
            if self.formats:
                txt += "; formats " + ", ".join(f"{k} {v}" for k, v in self.formats.items())
            lines.append(txt)
        if self.bad_files:
            lines.append(f"skipped {self.n_skipped} bad file(s):")
            for b in self.bad_files[:TEXT_LIST_LIMIT]:
                lines.append(f"  {b.reason:<18} {b.path}" + (f"  ({b.detail})" if b.detail else ""))
            lines += _more(len(self.bad_files))
        if self.duplicates:
            n = sum(len(d.paths) - 1 for d in self.duplicates)
            lines.append(f"duplicates within a split: {len(self.duplicates)} group(s), {n} redundant file(s):")
            for d in self.duplicates[:TEXT_LIST_LIMIT]:
                lines.append(f"  {d.split}: " + " = ".join(d.paths))
            lines += _more(len(self.duplicates))
        if self.leaks:
            how = {"drop": ", left out by --leaks drop", "keep": ", kept by --leaks keep",
                   "fail": " (--leaks fail stops the run)"}.get(self.leak_policy, "")
            lines.append(f"leakage: {len(self.leaks)} file(s) identical across splits{how}:")
            for lk in self.leaks[:TEXT_LIST_LIMIT]:
                lines.append(f"  {lk.split_b} {lk.path_b} = {lk.split_a} {lk.path_a}")
            lines += _more(len(self.leaks))
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} path(s): not images by name or place, or reached "
                         "again through links:")
            for ig in self.ignored[:TEXT_LIST_LIMIT]:
                lines.append(f"  {ig['path']}  ({ig['why']})")
            lines += _more(len(self.ignored))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.leak_note:
            lines.append(self.leak_note)
        return "\n".join(lines)

    def write_skipped_csv(self, path: str | os.PathLike) -> None:
        """Write the bad files (path, reason, detail, split, label) as CSV; header only when none."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason", "detail", "split", "label"])
            for b in self.bad_files:
                w.writerow([b.path, b.reason, b.detail, b.split, b.label])
        os.replace(tmp, p)


def _more(n: int) -> list[str]:
    return [f"  ... and {n - TEXT_LIST_LIMIT} more (all of them are in the JSON report)"] if n > TEXT_LIST_LIMIT else []


def inspect_file(path: str) -> dict[str, Any]:
    """Decode one file fully (the only way to find truncation); its size, mode and content hash.

    The file is opened once, and only if it is a regular file (a FIFO would block forever).
    """
    try:
        with open_regular(path) as f:
            arr, mode, fmt = decode_rgb(f, path)
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
    return {"ok": True, "h": h, "w": w, "mode": mode, "format": fmt, "sha256": digest.hexdigest()}


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
                return {"ok": False, "reason": "truncated" if "truncated" in problem else "corrupt",
                        "detail": problem}
            f.seek(0)
            h, w, mode, fmt = read_header(f, path)
    except ImageError as exc:
        return {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except (OSError, MemoryError) as exc:  # an error while reading: skip the file, do not stop the check
        return {"ok": False, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "h": h, "w": w, "mode": mode, "format": fmt, "sha256": hashlib.sha256(data).hexdigest(),
            "decoded": False}


def check(source: DataSource, *, progress: bool = True, workers: int | None = None, sample: int | None = None,
          seed: int = 0, cache: bool = True, cache_dir: str | os.PathLike | None = None,
          thorough: bool = False) -> Report:
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
    assert source.items is not None
    t0 = time.perf_counter()
    items = source.items
    paths = items["path"].astype(str).tolist()
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    if sample is not None and sample < 1:
        raise DataError(f"--check-sample must be at least 1, got {sample}")
    chosen = (np.sort(np.random.default_rng(seed).choice(len(paths), sample, replace=False))
              if sample is not None and sample < len(paths) else np.arange(len(paths)))
    results: list[dict[str, Any]] = [_UNCHECKED] * len(paths)
    n_reused = check_files(paths, chosen, results, inspect_file if thorough else inspect_header, workers=workers,
                           progress=progress, cache_key=source_key(source.spec) if cache else None,
                           cache_dir=cache_dir, need_decoded=thorough)
    ok = np.array([r["ok"] for r in results], dtype=bool)
    labels = items["label"].tolist()
    splits = items["split"].tolist()
    bad = [BadFile(path=p, reason=r["reason"], detail=r["detail"], split=s, label=lab)
           for p, r, s, lab in zip(paths, results, splits, labels) if not r["ok"]]

    present = [s for s in SPLITS if s in set(splits)]
    good = items[ok]
    class_counts = {s: {c: int(((good["split"] == s) & (good["label"] == c)).sum()) for c in source.classes}
                    for s in present}
    _fail_on_empty(source, class_counts, bad)

    report = Report(spec=source.spec, description=source.description, kind="files", classes=list(source.classes),
                    split_method=source.split_method, class_counts=class_counts, n_files=len(paths),
                    bad_files=bad, ignored=list(source.ignored), source_warnings=list(source.warnings),
                    _items=items, _ok=ok, n_checked=len(chosen),
                    n_reused=n_reused)
    good_results = [r for r in results if r["ok"] and "h" in r]
    if good_results:
        hs = np.array([r["h"] for r in good_results])
        ws = np.array([r["w"] for r in good_results])
        report.image_sizes = {k: {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}
                              for k, v in (("height", hs), ("width", ws))}
        report.modes = dict(Counter(r["mode"] or "?" for r in good_results).most_common())
        report.formats = dict(Counter(r["format"] or "?" for r in good_results).most_common())
    report.duplicates, report.leaks = _duplicates(
        [(p, s, lab, r["sha256"]) for p, s, lab, r in zip(paths, splits, labels, results) if "sha256" in r])
    report.warnings = _warnings(report)
    report.seconds = time.perf_counter() - t0
    return report


_UNCHECKED: dict[str, Any] = {"ok": True, "unchecked": True}  # outside a --check-sample: assumed usable


def _counts(items: pd.DataFrame, report: Report) -> dict[str, dict[str, int]]:
    return {s: {c: int(((items["split"] == s) & (items["label"] == c)).sum()) for c in report.classes}
            for s in report.class_counts}


def _fail_on_empty(source: DataSource, counts: dict[str, dict[str, int]], bad: list[BadFile]) -> None:
    total = {c: sum(counts[s][c] for s in counts) for c in source.classes}
    empty = [c for c, n in total.items() if n == 0]
    if empty and source.kind == "files":  # a TFDS ClassLabel may name unused classes: a warning there
        reasons = Counter(b.reason for b in bad if b.label in empty)
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        raise DataError(f"class(es) {', '.join(repr(c) for c in empty)} have no usable image after skipping bad "
                        f"files ({why}); fix or remove them (first: "
                        f"{next(b.path + ': ' + b.reason for b in bad if b.label in empty)})")
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
                groups.append(DuplicateGroup(sha256=sha, split=s, paths=[f[0] for f in in_s],
                                             labels=[f[2] for f in in_s]))
        first = files[0]
        for f in files[1:]:
            if f[1] != first[1]:
                leaks.append(Leak(sha256=sha, path_a=first[0], split_a=first[1], label_a=first[2],
                                  path_b=f[0], split_b=f[1], label_b=f[2]))
    groups.sort(key=lambda g: (order[g.split], g.paths[0]))
    leaks.sort(key=lambda lk: (order[lk.split_b], lk.path_b))
    return groups, leaks


def _warnings(r: Report) -> list[str]:
    out = list(r.source_warnings)
    counts = r.class_counts
    for c in r.classes:
        if "train" in counts and counts["train"].get(c, 0) == 0:
            out.append(f"class {c!r} has no training images: the model cannot learn it")
        elif "val" in counts and counts["val"].get(c, 0) == 0:
            out.append(f"class {c!r} has no validation images: its validation metrics will be missing")
    train = counts.get("train", {})
    nonzero = [n for n in train.values() if n > 0]
    if len(nonzero) >= 2 and max(nonzero) >= 5 * min(nonzero):
        out.append(f"classes are imbalanced in train ({min(nonzero)} to {max(nonzero)} images): consider "
                   "--class-weight auto, and read the per-class metrics")
    conflicts = [g for g in r.duplicates if len(set(g.labels)) > 1] + [lk for lk in r.leaks if lk.label_a != lk.label_b]
    if conflicts:
        out.append(f"{len(conflicts)} duplicate(s) carry different labels: the same image is labelled twice")
    if r.leaks and r.leak_policy == "keep":
        out.append(f"{len(r.leaks)} validation/test image(s) identical to earlier-split images are kept "
                   "(--leaks keep): they inflate the validation metrics; remove them, or pass --leaks drop")
    elif r.leaks and r.leak_policy != "drop":  # drop: done, and said by apply_leak_policy's message
        out.append("validation/test images identical to earlier-split images inflate the metrics; remove the "
                   "copies listed under leakage, or let the run leave them out (tlkit finetune --leaks drop, "
                   "the default)")
    return out


def apply_leak_policy(report: Report, policy: str = DEFAULT_LEAK_POLICY, *,
                      context: str = "this run") -> tuple[pd.DataFrame | None, str]:
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
    if report.kind != "files":
        return None, ""
    assert report._items is not None and report._ok is not None
    usable, used = (report._items[report._keep(drop)] for drop in (False, policy == "drop"))
    # From the file list every time (not from class_counts): applying a policy twice gives the same report.
    before, after = _counts(usable, report), _counts(used, report)
    report.class_counts = after
    report.dropped = {s: gone for s in before
                      if (gone := {c: before[s][c] - after[s][c] for c in report.classes if before[s][c] > after[s][c]})}
    report.warnings = _warnings(report)
    report.leak_note = ""
    if not report.leaks:
        return used.reset_index(drop=True), ""
    n = len(report.leaks)
    which = "/".join(w for s, w in (("val", "validation"), ("test", "test")) if any(lk.split_b == s for lk in report.leaks))
    if policy == "fail":
        first = report.leaks[0]
        raise DataError(f"{n} {which} file(s) are identical to earlier-split files (first: {first.path_b} = "
                        f"{first.path_a}); --leaks fail stops here: remove them, or pass --leaks drop to leave them "
                        f"out (the default) or --leaks keep to keep them (tlkit check-data {report.spec} lists them all)")
    if policy == "keep":
        report.leak_note = (f"--leaks keep: {n} {which} file(s) identical to earlier-split files stay in {context} "
                            "and in its counts; they inflate validation accuracy (--leaks drop leaves them out)")
    else:
        where = "; ".join(f"{s}: " + ", ".join(f"{c} {k}" for c, k in by.items()) for s, by in report.dropped.items())
        report.leak_note = (f"--leaks drop: {report.n_dropped} {which} file(s) identical to earlier-split files "
                            f"({where}) are left out of {context} and of its counts; nothing is left to remove by "
                            "hand (--leaks keep keeps them, --leaks fail stops instead)")
    return used.reset_index(drop=True), report.leak_note


def _check_tfds(source: DataSource) -> Report:
    t0 = time.perf_counter()
    b = source.builder()
    counts = {s: tfds_class_counts(source, s) for s in source.splits()}
    report = Report(spec=source.spec, description=source.description, kind="tfds", classes=list(source.classes),
                    split_method=source.split_method, class_counts=counts,
                    n_files=sum(sum(c.values()) for c in counts.values()), files_checked=False,
                    source_warnings=list(source.warnings))
    shape = b.info.features[source.image_key].shape
    if shape and shape[0] is not None and shape[1] is not None:
        report.image_sizes = {"height": {"min": shape[0], "median": shape[0], "max": shape[0]},
                              "width": {"min": shape[1], "median": shape[1], "max": shape[1]}}
    _fail_on_empty(source, counts, [])
    report.warnings = _warnings(report)
    report.seconds = time.perf_counter() - t0
    return report
