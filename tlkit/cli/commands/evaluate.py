"""``tlkit evaluate``: metrics and confusion matrix of one or several finetuned runs."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import positive_int

NAME = "evaluate"
HELP = "evaluate finetuned runs on a dataset (TTA, ensembles)"
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories made by `tlkit finetune`")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's own validation split)")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        default=None,
        help="split of the data to use; all: every file (default: val; with --data and no "
        "train/val/test split in it: all)",
    )
    p.add_argument(
        "--tta",
        choices=["none", "flip", "crops"],
        default="none",
        help="average predictions over flips or the 10 standard crops",
    )
    p.add_argument("--ensemble", action="store_true", help="average the runs' probabilities")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--out", help="write the metrics JSON and confusion.png into this folder")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import contextlib

    from tlkit.finetune.evaluation_runs import evaluate_runs
    from tlkit.finetune.store_runs import fetched_run

    with contextlib.ExitStack() as stack:
        # A run on gs:// or s3:// is read from a downloaded copy; results keep the name given.
        local = [stack.enter_context(fetched_run(r)) for r in args.runs]
        results = evaluate_runs(
            local,
            data=args.data,
            split=args.split,
            tta=args.tta,
            ensemble=args.ensemble,
            batch_size=args.batch_size,
            out=args.out,
        )
    given = dict(zip(map(str, local), args.runs))
    results = {given.get(k, k): v for k, v in results.items()}
    if "members" in results.get("ensemble", {}):
        results["ensemble"]["members"] = [given.get(m, m) for m in results["ensemble"]["members"]]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if any(m.get("multi_label") for m in results.values()):
        from tlkit.finetune.multilabel_eval import print_results

        print_results(results)  # per-class AP and F1 at the run's thresholds, macro/micro figures
        return 0
    for name, m in results.items():
        line = f"{name}: top-1 {m['top1']:.4f}"
        if "top5" in m:
            line += f", top-5 {m['top5']:.4f}"
        what = "all files" if m["split"] == "all" else m["split"]
        print(line + f" on {m['count']} images ({what}, tta={m['tta']})")
        for note in m.get("notes", []):
            print(f"  {note}")
        worst = sorted(m["per_class"].items(), key=lambda kv: kv[1]["recall"])[:3]
        print("  lowest recall: " + ", ".join(f"{c} {v['recall']:.2f}" for c, v in worst))
    return 0
