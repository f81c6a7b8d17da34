"""``tlkit evaluate`` and ``tlkit predict`` on multi-label runs: the stored thresholds applied to scores.

:func:`tlkit.finetune.evaluation_runs.evaluate_runs` hands a multi-label source here: each run's
(or the ensemble's averaged) sigmoid scores are scored with :func:`tlkit.multilabel_metrics.multilabel_metrics`
at the thresholds the run stored (``thresholds.json``, chosen on its validation split by
:mod:`tlkit.finetune.multilabel`); an ensemble uses the members' mean threshold per class.
``--out`` writes ``evaluation.json`` and a ``per_class_<run>.png`` per entry (no confusion matrix).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.errors import DataError


def check_multi_label_runs(loaded: Sequence[tuple], runs: Sequence[str]) -> list[list[float]]:
    """The stored thresholds of each run, all of which must be multi-label (a sigmoid head)."""
    from tlkit.finetune.multilabel import is_multi_label, read_thresholds

    out = []
    for (model, labels, _), run in zip(loaded, runs):
        if not is_multi_label(model):
            raise DataError(f"{run} is a single-label run and this data is multi-label: evaluate it on its own data")
        out.append(read_thresholds(run, labels))
    return out


def multi_label_results(
    y: Any,
    probs_all: Sequence[Any],
    runs: Sequence[str],
    labels: Sequence[str],
    thresholds: Sequence[Sequence[float]],
    ensemble: bool,
    split: str,
    tta: str,
    notes: list[str],
    out: str | None,
) -> dict[str, dict]:
    """The results dict of :func:`~tlkit.finetune.evaluation_runs.evaluate_runs` for multi-label runs."""
    from tlkit import multilabel_metrics as mm

    entries: list[tuple[str, Any, Sequence[float], dict]] = []
    if ensemble:
        mean_t = np.mean(np.asarray(thresholds, dtype=np.float64), axis=0).tolist()
        entries.append(("ensemble", np.mean(probs_all, axis=0), mean_t, {"members": [str(r) for r in runs]}))
    else:
        entries = [(str(r), p, t, {}) for r, p, t in zip(runs, probs_all, thresholds)]
    results = {
        name: {**mm.multilabel_metrics(y, p, labels, t), "split": split, "tta": tta, **extra, "notes": list(notes)}
        for name, p, t, extra in entries
    }
    if out:
        from tlkit._io import write_json_atomic
        from tlkit.finetune.multilabel import per_class_plot

        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "evaluation.json", results)
        for name, m in results.items():
            per_class_plot(m, out_dir / f"per_class_{Path(name).name}.png", about=f"{Path(name).name}, tta={tta}")
    return results


def print_results(results: dict[str, dict]) -> None:
    """``tlkit evaluate``'s table for multi-label entries: per-class AP/F1, then macro/micro figures."""
    from tlkit import multilabel_metrics as mm

    for name, m in results.items():
        what = "all files" if m["split"] == "all" else m["split"]
        print(f"{name}: multi-label, {m['count']} images ({what}, tta={m['tta']}); thresholds: the run's")
        for note in m.get("notes", []):
            print(f"  {note}")
        for line in mm.table(m):
            print(f"  {line}")
