"""Evaluate saved runs (single, TTA, ensemble) on their own or on new data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tlkit.errors import ConfigError, DataError, NotFoundError
from tlkit.finetune import run_files
from tlkit.finetune.rundir import RunDir


def load_run(run_dir: str | Path) -> tuple[Any, list[str], dict]:
    """(model, class names, config) of a run directory.

    The checkpoint is ``best.keras`` (else ``last.keras``); class names come from
    ``labels.json`` (a JSON list) or ``labels.txt`` (one per line); ``config.json``
    is optional (``{}`` when absent). A damaged checkpoint or JSON file, or labels that do
    not match the checkpoint's outputs, raise
    :class:`~tlkit.finetune.run_files.DamagedFileError` naming the file and the fix.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise NotFoundError(f"run directory {run} does not exist")
    rd = RunDir(run)
    ckpt = rd.require_checkpoint()  # best.keras, else last.keras
    if (run / "labels.json").exists():
        run_files.check_labels(run)  # not JSON, or not what the run wrote: blamed, not the data
        labels = rd.read_json("labels.json")
    elif (run / "labels.txt").exists():
        labels = [ln.strip() for ln in (run / "labels.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        raise NotFoundError(f"{run} has no labels.json or labels.txt")
    config = rd.read_json("config.json", {}) or {}
    if isinstance(config, dict) and config.get("task") == "segmentation":  # tlkit.segment's runs have their own
        raise ConfigError(f"{run} is a segmentation run: use tlkit segment evaluate, predict or export on it")
    model = rd.load_checkpoint(ckpt, compile=False)
    outputs = int(model.output_shape[-1])
    if outputs != len(labels):
        name = "labels.json" if (run / "labels.json").exists() else "labels.txt"
        raise run_files.DamagedFileError(
            f"{run / name} names {len(labels)} classes, but {ckpt.name} outputs {outputs}",
            f"{name} was damaged or edited: restore it from a copy (the class names in the order the run was "
            f"trained on)",
        )
    return model, [str(v) for v in labels], config


def evaluate_runs(
    runs: Sequence[str],
    *,
    data: str | None = None,
    split: str | None = None,
    tta: str = "none",
    ensemble: bool = False,
    batch_size: int = 32,
    out: str | None = None,
) -> dict[str, dict]:
    """Metrics per run (or one ``ensemble`` entry) on ``data`` or the first run's validation split.

    ``split`` is ``train``, ``val``, ``test`` or ``all`` (every file); by default ``val`` when
    there is one, ``all`` for new ``data`` without a train/val/test split, else ``train``. The
    run's leak policy applies as in training. Each entry's ``notes`` say what was left out or
    evaluated beyond the metrics (``split`` names the split, ``count`` the images).
    """
    import numpy as np

    from tlkit import evaluate, plots
    from tlkit.data import pipeline as tldata
    from tlkit.data import preflight

    loaded = [load_run(r) for r in runs]
    labels = loaded[0][1]
    for (_, lab, _), r in zip(loaded[1:], runs[1:]):
        if lab != labels:
            raise DataError(f"{r} was trained on classes {lab}, {runs[0]} on {labels}: they cannot be compared")
    cfg = loaded[0][2]
    if not data and not cfg.get("data"):
        raise DataError(f"{runs[0]} does not record its data; pass --data")
    source = tldata.resolve(
        data or cfg["data"],
        val_split=cfg.get("val_split", 0.2) if not data else 0.0,
        seed=cfg.get("seed", 0),
        tfds_data_dir=cfg.get("tfds_data_dir"),
        min_classes=1,
        multi_label=bool(cfg.get("multi_label", False)),
    )
    unknown = sorted(set(source.classes) - set(labels))
    if unknown:
        raise DataError(f"the data has classes the runs never saw: {unknown}; known: {labels}")
    report = preflight.check(source, progress=False)
    notes = []
    # As training did: the run's leak policy (older runs recorded none: drop, the default then and now).
    items, leak_note = preflight.apply_leak_policy(report, cfg.get("leaks") or "drop", context="this evaluation")
    if leak_note:
        notes.append(leak_note)
    if source.kind in ("files", "records"):
        import dataclasses

        items = items.copy()
        # Class ids follow the run's labels, not the new data's own (possibly smaller) class list.
        if source.multi_label:  # label_ids (and label_id, the first) by the run's labels
            from tlkit.data.multilabel import remap

            items = remap(items, source.classes, list(labels))
        else:
            items["label_id"] = items["label"].map({c: i for i, c in enumerate(labels)})
        if data and not split and source.split_method == "none":
            split = "all"  # new data without a train/val/test split: every file is evaluation data
        if split == "all":
            items["split"] = "train"  # one split holding every file, for make_dataset
            notes.append(
                f"evaluated all {len(items)} usable files of {data or cfg['data']}"
                + (" (it has no train/val/test split)" if source.split_method == "none" else "")
            )
        source = dataclasses.replace(source, items=items, classes=list(labels))
    elif split == "all":
        raise DataError(
            "--split all is for folders and CSV manifests; for a TFDS source name a split: "
            f"{', '.join(source.splits())}"
        )
    sp = split or ("val" if tldata.dataset_size(source, "val") > 0 else "train")
    ds_split = "train" if sp == "all" else sp
    multi = bool(getattr(source, "multi_label", False))
    if multi:
        from tlkit.finetune.multilabel_eval import check_multi_label_runs, multi_label_results

        thresholds = check_multi_label_runs(loaded, runs)
    results: dict[str, dict] = {}
    probs_all = []
    y = None
    for (model, _, _rcfg), name in zip(loaded, runs):
        size = tuple(model.input_shape[1:3])
        ds = tldata.make_dataset(
            source, ds_split, image_size=size, batch_size=batch_size, training=False, channels=model.input_shape[-1]
        )
        y, probs = evaluate.predict_dataset(model, ds, tta=None if tta == "none" else tta)
        probs_all.append(probs)
        if multi:
            continue
        if not ensemble:
            results[str(name)] = {
                **evaluate.metrics_from_probs(y, probs, labels),
                "split": sp,
                "tta": tta,
                "notes": list(notes),
            }
    if multi:
        results = multi_label_results(y, probs_all, runs, labels, thresholds, ensemble, sp, tta, notes, out)
    elif ensemble:
        probs = evaluate.ensemble(probs_all)
        results["ensemble"] = {
            **evaluate.metrics_from_probs(y, probs, labels),
            "split": sp,
            "tta": tta,
            "members": [str(r) for r in runs],
            "notes": list(notes),
        }
    if out and not multi:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        from tlkit._io import write_json_atomic

        write_json_atomic(out_dir / "evaluation.json", results)
        for name, m in results.items():
            plots.confusion_matrix(
                np.asarray(m["confusion_matrix"]),
                labels,
                out_dir / f"confusion_{Path(name).name}.png",
                split=m["split"],
                about=f"{Path(name).name}, tta={m['tta']}",
            )
    return results
