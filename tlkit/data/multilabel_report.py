"""The preflight report's multi-label part (:mod:`tlkit.data.preflight`, :mod:`tlkit.data.report`).

For a multi-label source the report's ``class_counts`` are positives per label and split (an image
counts once under each label it carries), and ``report.multilabel`` holds what a table of positives
does not show: images per split (``n_usable`` counts images, not positives), images with 0, 1 and
2+ labels per split, and the most frequent label pairs. Its warnings replace the single-label ones:
a label with no positive in validation or in training, and labels whose training positives differ
five-fold or more. The same image under several labels is what multi-label data is, so duplicates
with different label sets are not called conflicts; the same bytes in two splits is still a leak.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

import pandas as pd

from tlkit.data.sources import SPLITS

TOP_PAIRS = 10  # label pairs listed (the text and the JSON)


def stats(items: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """``images`` {split: n}, ``labels_per_image`` {split: {"0": n, "1": n, "2+": n}}, ``dropped_images``
    {split: n} (set by :func:`attach`), ``label_pairs`` [{"labels": [a, b], "images": n}] (most frequent first,
    over all splits, :data:`TOP_PAIRS` of them)."""
    splits = [s for s in SPLITS if s in set(items["split"])]
    images = {s: 0 for s in splits}
    per_image = {s: {"0": 0, "1": 0, "2+": 0} for s in splits}
    pairs: Counter = Counter()
    for split, ids in zip(items["split"].tolist(), items["label_ids"].tolist()):
        images[split] += 1
        per_image[split]["0" if not ids else "1" if len(ids) == 1 else "2+"] += 1
        pairs.update(combinations(sorted(ids), 2))
    top = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PAIRS]
    return {
        "images": images,
        "labels_per_image": per_image,
        "label_pairs": [{"labels": [classes[a], classes[b]], "images": int(n)} for (a, b), n in top],
        "dropped_images": {},
    }


def attach(report: Any, items: pd.DataFrame, dropped: pd.DataFrame | None = None) -> None:
    """Set ``report.multilabel`` from the items a run uses (after bad files and any dropped leaks);
    ``dropped``: the leaked copies the leak policy left out (counted per split)."""
    report.multilabel = stats(items, report.classes)
    gone = Counter(dropped["split"].tolist()) if dropped is not None else Counter()
    report.multilabel["dropped_images"] = {s: int(n) for s, n in gone.items()}


def warnings(r: Any) -> list[str]:
    """The per-label warnings of a multi-label report (see the module docstring)."""
    out = []
    counts = r.class_counts
    for c in r.classes:
        if "train" in counts and counts["train"].get(c, 0) == 0:
            out.append(f"label {c!r} has no positive in training: the model cannot learn it")
        elif "val" in counts and counts["val"].get(c, 0) == 0:
            out.append(f"label {c!r} has no positive in val: its validation metrics and threshold cannot be measured")
    nonzero = [n for n in counts.get("train", {}).values() if n > 0]
    if len(nonzero) >= 2 and max(nonzero) >= 5 * min(nonzero):
        out.append(
            f"labels are imbalanced in train ({min(nonzero)} to {max(nonzero)} positives): read the per-label metrics"
        )
    return out


def text_lines(r: Any) -> list[str]:
    """Lines after the table: images per split with 0/1/2+ labels, and the most frequent label pairs."""
    m = r.multilabel
    lines = []
    for s, k in m["labels_per_image"].items():
        lines.append(
            f"{s}: {m['images'][s]} images: {k['0']} with no label, {k['1']} with one, {k['2+']} with two or more"
        )
    if m["label_pairs"]:
        pairs = ", ".join(f"{'+'.join(p['labels'])} {p['images']}" for p in m["label_pairs"])
        lines.append(f"most frequent label pairs: {pairs}")
    return lines
