"""``tlkit inspect NAME``: per-layer shapes, memory, parameters, receptive field, multiply-adds."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import image_side, positive_int


def memory_size(text: str) -> int:
    from tlkit.errors import ConfigError
    from tlkit.memory_budget import parse_size

    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


NAME = "inspect"
HELP = "per-layer table of a model: shapes, activations, parameters, receptive field, mult-adds"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    from tlkit.models.teaching import MODULES  # no Keras: the names only

    p.add_argument(
        "name", help=f"a registry name (see `tlkit models`) or one of the lecture notes' modules: {', '.join(MODULES)}"
    )
    p.add_argument(
        "--input-size",
        nargs=2,
        type=image_side,
        metavar=("H", "W"),
        help="input height and width (default: the model's own)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m = p.add_argument_group("training memory (--memory)")
    m.add_argument(
        "--memory",
        action="store_true",
        help="print the memory of one training step instead: weights, gradients, optimizer state, "
        "every layer's output (the activations kept for the backward pass) and as much again for their "
        "gradients, the input batch (float32)",
    )
    m.add_argument("--batch", type=positive_int, help="batch size for --memory (default 32)")
    m.add_argument(
        "--optimizer",
        choices=("adam", "momentum", "sgd"),
        help="optimizer state for --memory: adam 2 values per parameter, momentum 1, sgd 0 (default adam)",
    )
    m.add_argument(
        "--budget", type=memory_size, help="with --memory: the largest batch that fits this size (8GB, 16GiB)"
    )


def inspect_model(name: str, input_size: tuple[int, int] | None = None) -> dict:
    """Build ``name`` (random weights) and return its :func:`tlkit.inspection.layer_table`.

    ``name`` is a registry name or one of :data:`tlkit.models.teaching.MODULES`, the
    lecture notes' building blocks that are not whole networks.
    """
    from tlkit.models.teaching import MODULES, find_module

    module = find_module(name)
    if module is not None:
        return _inspect_module(module, input_size)
    from tlkit.errors import UnknownModelError
    from tlkit.registry import get_spec

    try:
        spec = get_spec(name)  # unknown names fail here, before TensorFlow loads
    except UnknownModelError as e:
        raise UnknownModelError(
            f"{e} `tlkit inspect` also knows the lecture notes' modules: {', '.join(MODULES)}."
        ) from None
    import tlkit
    from tlkit.inspection import layer_table

    include_top = True
    notes = []
    if input_size and spec.fixed_input and tuple(input_size) != spec.input_shape[:2]:
        include_top = False
        notes.append(
            f"{spec.name}'s fully connected head fixes its input to "
            f"{spec.input_shape[0]}x{spec.input_shape[1]}; showing the convolutional body only"
        )
    model = tlkit.build(spec.name, input_shape=tuple(input_size) if input_size else None, include_top=include_top)
    table = layer_table(model, name=spec.name)
    table["notes"] = notes + table["notes"]
    return table


def _inspect_module(module, input_size: tuple[int, int] | None) -> dict:
    from tlkit.inspection import layer_table
    from tlkit.models.teaching import build_module

    shape = (*input_size, module.input_shape[2]) if input_size else module.input_shape
    table = layer_table(build_module(module, shape), name=module.name)
    about = f"{module.name}: {module.description} (a lecture-notes module, not in `tlkit models`)"
    table["notes"] = [about, *table["notes"]]
    return table


def run(args: argparse.Namespace) -> int:
    if args.memory:
        return _run_memory(args)
    used = [f for f, v in (("--batch", args.batch), ("--optimizer", args.optimizer), ("--budget", args.budget)) if v]
    if used:
        from tlkit.cli.main import CLIError

        raise CLIError(
            f"{', '.join(used)} only appl{'y' if len(used) > 1 else 'ies'} with --memory: add --memory or drop them"
        )
    table = inspect_model(args.name, tuple(args.input_size) if args.input_size else None)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        from tlkit.inspection import format_table

        print(format_table(table))
    return 0


def _run_memory(args: argparse.Namespace) -> int:
    from tlkit.memory_budget import budget_from_table, format_budget

    table = inspect_model(args.name, tuple(args.input_size) if args.input_size else None)
    budget = budget_from_table(table, args.batch or 32, args.optimizer or "adam")
    if args.json:
        print(json.dumps(budget.to_dict(args.budget), indent=2))
    else:
        print(format_budget(budget, args.budget))
    return 0
