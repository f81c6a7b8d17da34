"""``tlkit probe``: a linear classifier on extracted features, cross-validated and held out."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import positive_int

NAME = "probe"
HELP = "train logistic regression / linear SVM probes on a features file"
ORDER = 75


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("features", help="file written by `tlkit extract`")
    p.add_argument("--out", required=True, help="folder for probe.joblib, metrics.json, confusion.png")
    p.add_argument("--layer", help="which tapped layer (default: the first)")
    p.add_argument("--probe", choices=["both", "logreg", "svm"], default="both")
    p.add_argument("--cv", type=positive_int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--export",
        metavar="RUN_DIR",
        help="also attach the probe as a Dense head and save a run directory for `tlkit export`",
    )
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tlkit.features.probe import attach_head, probe

    kinds = ("logreg", "svm") if args.probe == "both" else (args.probe,)
    if args.export:
        # A head that cannot be exported faithfully is refused before the probe is trained.
        from tlkit.features.probe import check_export_target, check_exportable
        from tlkit.features.store import load_features_meta

        check_export_target(args.export)
        check_exportable(load_features_meta(args.features), args.features)
    m = probe(args.features, args.out, layer=args.layer, kinds=kinds, cv=args.cv, seed=args.seed)
    if args.export:
        attach_head(args.out, args.export)
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "source"}, indent=2))
        return 0
    chosen = m["probe"]["chosen"]
    for kind, r in m["probe"]["candidates"].items():
        mark = " (chosen)" if kind == chosen else ""
        print(f"{kind}: cross-validated accuracy {r['cv_accuracy']:.4f} at C={r['C']:g}{mark}")
    print(f"held-out accuracy {m['top1']:.4f} on {m['count']} images; confusion matrix: {args.out}/confusion.png")
    if args.export:
        print(f"run directory with the probe as a Dense head: {args.export} (export with `tlkit export {args.export}`)")
    return 0
