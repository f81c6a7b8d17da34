"""The ``tlkit`` command line: parses and dispatches; each handler imports what it needs."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

import tlkit
from tlkit import commands as _commands_pkg


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the noise of "(default: None)" or "(default: False)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return action.help or ""
        return super()._get_help_string(action)


def _command_modules() -> list[ModuleType]:
    mods = [importlib.import_module(f"tlkit.commands.{m.name}")
            for m in pkgutil.iter_modules(_commands_pkg.__path__) if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full parser; building it imports no TensorFlow."""
    parser = argparse.ArgumentParser(
        prog="tlkit",
        description="Don't be a hero: take an ImageNet-pretrained model and finetune it on your images.",
    )
    parser.add_argument("--version", action="version", version=f"tlkit {tlkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=_HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlkit`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as exc:
        print(f"tlkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tlkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as exc:
        # Our own validation errors name the bad value; show them without a traceback.
        if os.environ.get("TLKIT_DEBUG"):
            raise
        msg = exc.args[0] if exc.args else exc
        print(f"tlkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from tlkit.cli import main as _main  # the package's module, so its CLIError class is the one raised

    sys.exit(_main())
