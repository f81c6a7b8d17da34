"""``tlkit models``: list the registry (no model is built, no TensorFlow import)."""

from __future__ import annotations

import argparse
import json

from tlkit.errors import ConfigError

NAME = "models"
HELP = "list the architectures tlkit can build"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob on the name, e.g. 'resnet*'")
    p.add_argument("--family", help="only this family (e.g. vgg, resnet, keras_applications)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def rows(pattern: str = "*", family: str | None = None) -> list[dict]:
    """One dict per registered model: the data ``tlkit models`` shows."""
    from tlkit.registry import families, list_models

    if family is not None and family not in families():
        raise ConfigError(f"unknown family {family!r}; known: {', '.join(families())}")
    return [
        {
            "name": s.name,
            "family": s.family,
            "input_size": list(s.input_shape),
            "params": s.params,
            "imagenet_weights": s.has_imagenet,
            "preprocessing": s.preprocessing,
            "weights": [
                {
                    "name": w.name,
                    "kind": w.kind,
                    "file": w.file.format(rows=s.input_shape[0]),
                    "source": w.requirement or w.url,
                    "licence": w.licence,
                }
                for w in s.weights
                if not isinstance(w, str)
            ],
            "description": s.description,
        }
        for s in list_models(pattern, family=family)
    ]


def run(args: argparse.Namespace) -> int:
    data = rows(args.pattern, args.family)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if not data:
        print(f"no model matches {args.pattern!r}")
        return 1
    header = ("name", "family", "input", "params", "imagenet")
    table = [
        (
            d["name"],
            d["family"],
            "x".join(map(str, d["input_size"])),
            f"{d['params']:,}" if d["params"] else "-",
            "yes" if d["imagenet_weights"] else "-",
        )
        for d in data
    ]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0
