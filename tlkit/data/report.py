"""The preflight's report (:mod:`tlkit.data.preflight`): its findings as data, as text and as CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlkit._io import atomic_path
from tlkit.data.pipeline import SPLITS
from tlkit.errors import DataError

# How many entries of each list the text report shows; JSON and skipped.csv have them all.
TEXT_LIST_LIMIT = 20


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
    n_turned: int = 0  # usable JPEGs whose EXIF orientation turns them (every tlkit path decodes them upright)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Set by apply_leak_policy: the policy ("" before), and the leaked copies it left out (split -> class -> n),
    # which class_counts no longer include.
    leak_policy: str = ""
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    leak_note: str = ""  # what the policy did, in words (the text report's last line)
    source_warnings: list[str] = field(default_factory=list, repr=False)
    # Multi-label data: images per split, labels per image, label pairs (tlkit.data.multilabel_report);
    # class_counts then hold positives per label. None for single-label data.
    multilabel: dict[str, Any] | None = None
    _items: pd.DataFrame | None = field(default=None, repr=False)
    _ok: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_skipped(self) -> int:
        return len(self.bad_files)

    @property
    def n_usable(self) -> int:
        """Examples a run uses: usable files, less any leaked copies the leak policy dropped."""
        if self.multilabel is not None:  # class_counts are positives per label
            return sum(self.multilabel["images"].values())
        return sum(sum(c.values()) for c in self.class_counts.values())

    @property
    def n_dropped(self) -> int:
        if self.multilabel is not None:
            return sum(self.multilabel["dropped_images"].values())
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
            "spec": self.spec,
            "description": self.description,
            "kind": self.kind,
            "classes": list(self.classes),
            "split_method": self.split_method,
            "files_checked": self.files_checked,
            "n_files": self.n_files,
            "n_checked": self.n_checked if self.n_checked is not None else self.n_files,
            "n_reused": self.n_reused,
            "n_usable": self.n_usable,
            "n_skipped": self.n_skipped,
            "n_dropped": self.n_dropped,
            "leak_policy": self.leak_policy,
            "class_counts": self.class_counts,
            "dropped_counts": self.dropped,
            "bad_files": [asdict(b) for b in self.bad_files],
            "duplicates": [asdict(d) for d in self.duplicates],
            "leaks": [asdict(lk) for lk in self.leaks],
            "ignored": list(self.ignored),
            "image_sizes": self.image_sizes,
            "modes": self.modes,
            "formats": self.formats,
            "n_turned": self.n_turned,
            "warnings": list(self.warnings),
            "leak_note": self.leak_note,
            "seconds": round(self.seconds, 3),
            "multi_label": self.multilabel is not None,
            **({"multilabel": self.multilabel} if self.multilabel is not None else {}),
        }

    def to_text(self) -> str:
        """A short human report: counts table, sizes, and each problem list (first 20 entries)."""
        lines = [f"data: {self.description}"]
        if self.files_checked and self.n_checked is not None and self.n_checked < self.n_files:
            lines.append(
                f"checked a sample of {self.n_checked} of {self.n_files} files in {self.seconds:.1f} s "
                f"(--check-sample): {self.n_usable} usable, {self.n_skipped} skipped; the other "
                f"{self.n_files - self.n_checked} files are used unchecked (one that does not decode is "
                f"skipped by the input pipeline, with a warning), and duplicates and leaks are only "
                f"looked for in the sample"
            )
        elif self.files_checked:
            lines.append(
                f"checked {self.n_files} files in {self.seconds:.1f} s: {self.n_usable} usable, "
                f"{self.n_skipped} skipped"
                + (" (left out; the run goes on)" if self.n_skipped else "")
                + (
                    f", {self.n_dropped} dropped (copies of earlier-split files, --leaks drop)"
                    if self.n_dropped
                    else ""
                )
                + (f"; {self.n_reused} unchanged since an earlier check (not read again)" if self.n_reused else "")
            )
        elif self.kind == "records":
            lines.append(
                f"{self.n_files} prepared images; files were checked and decoded by tlkit prepare "
                "(tlkit check-data verifies each shard's checksum)"
            )
        else:
            lines.append(
                f"{self.n_files} examples; file checks skipped for a TFDS source "
                "(TFDS validated the records when it prepared them)"
            )
        splits = [s for s in SPLITS if s in self.class_counts]
        if splits:
            width = max([7 if self.n_dropped else 6 if self.multilabel else 5] + [len(c) for c in self.classes])
            lines.append(f"  {'class':<{width}}" + "".join(f"{s:>8}" for s in splits))
            for c in self.classes:
                lines.append(f"  {c:<{width}}" + "".join(f"{self.class_counts[s].get(c, 0):>8}" for s in splits))
            if self.multilabel is not None:  # positives per label, then images (an image has 0..C labels)
                lines[-1 - len(self.classes)] = lines[-1 - len(self.classes)].replace("class", "label", 1)
                imgs = self.multilabel["images"]
                lines.append(f"  {'images':<{width}}" + "".join(f"{imgs.get(s, 0):>8}" for s in splits))
            else:
                lines.append(
                    f"  {'total':<{width}}" + "".join(f"{sum(self.class_counts[s].values()):>8}" for s in splits)
                )
            if self.n_dropped:
                gone = {s: sum(self.dropped.get(s, {}).values()) for s in splits}
                if self.multilabel is not None:  # images, not positives
                    gone = {s: self.multilabel["dropped_images"].get(s, 0) for s in splits}
                lines.append(
                    f"  {'dropped':<{width}}"
                    + "".join(f"{gone[s]:>8}" for s in splits)
                    + "  (leaked copies, --leaks drop: not in the counts above)"
                )
            if self.multilabel is not None:
                from tlkit.data.multilabel_report import text_lines

                lines += text_lines(self)
        if self.image_sizes:
            hs, ws = self.image_sizes["height"], self.image_sizes["width"]
            txt = (
                f"image sizes: height {hs['min']:g}..{hs['max']:g} (median {hs['median']:g}), "
                f"width {ws['min']:g}..{ws['max']:g} (median {ws['median']:g})"
            )
            if self.modes:
                txt += "; modes " + ", ".join(f"{k} {v}" for k, v in self.modes.items())
            if self.formats:
                txt += "; formats " + ", ".join(f"{k} {v}" for k, v in self.formats.items())
            lines.append(txt)
        if self.n_turned:
            lines.append(
                f"{self.n_turned} file(s) turned upright by their EXIF orientation (as photo viewers show them; "
                "every tlkit command and the exported model decode them so)"
            )
        lines += self._needs_extra_lines()
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
            how = {
                "drop": ", left out by --leaks drop",
                "keep": ", kept by --leaks keep",
                "fail": " (--leaks fail stops the run)",
            }.get(self.leak_policy, "")
            lines.append(f"leakage: {len(self.leaks)} file(s) identical across splits{how}:")
            for lk in self.leaks[:TEXT_LIST_LIMIT]:
                lines.append(f"  {lk.split_b} {lk.path_b} = {lk.split_a} {lk.path_a}")
            lines += _more(len(self.leaks))
        if self.ignored:
            lines.append(
                f"ignored {len(self.ignored)} path(s): not images by name or place, or reached again through links:"
            )
            for ig in self.ignored[:TEXT_LIST_LIMIT]:
                lines.append(f"  {ig['path']}  ({ig['why']})")
            lines += _more(len(self.ignored))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.leak_note:
            lines.append(self.leak_note)
        return "\n".join(lines)

    def _needs_extra_lines(self) -> list[str]:
        """The files left out because their decoder is not installed (HEIC without the extra), by name."""
        from tlkit.data.images import HEIC_INSTALL, NEEDS_EXTRA

        heic = [b for b in self.bad_files if b.reason == NEEDS_EXTRA and "HEIC" in b.detail]
        if not heic:
            return []
        lines = [
            f"{len(heic)} HEIC/HEIF file(s) left out: decoding them needs pillow-heif; install it with "
            f"{HEIC_INSTALL} and run again:"
        ]
        lines += [f"  {b.path}" for b in heic[:TEXT_LIST_LIMIT]]
        return lines + _more(len(heic))

    def write_skipped_csv(self, path: str | os.PathLike) -> None:
        """Write the bad files (path, reason, detail, split, label) as CSV; header only when none."""
        with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason", "detail", "split", "label"])
            for b in self.bad_files:
                w.writerow([b.path, b.reason, b.detail, b.split, b.label])


def _more(n: int) -> list[str]:
    return [f"  ... and {n - TEXT_LIST_LIMIT} more (all of them are in the JSON report)"] if n > TEXT_LIST_LIMIT else []
