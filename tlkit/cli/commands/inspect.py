"""``tlkit inspect NAME``: per-layer shapes, memory, parameters, receptive field, multiply-adds."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import image_side

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
    table = inspect_model(args.name, tuple(args.input_size) if args.input_size else None)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        from tlkit.inspection import format_table

        print(format_table(table))
    return 0
