"""The ``tlkit`` command line: parses and dispatches; each handler imports what it needs."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import traceback
from types import ModuleType
from typing import NoReturn

import tlkit
from tlkit import _signals
from tlkit._quiet_tf import install_quiet_import_hook
from tlkit.cli import commands as _commands_pkg
from tlkit.errors import ConfigError, TlkitError


class CLIError(ConfigError):
    """A user-facing error raised by a command module: one line, exit status 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the noise of "(default: None)" or "(default: False)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), naming where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


EXIT_STATUS = """exit status:
  0    done
  1    a bug in tlkit (traceback shown), or a check that ran and found problems
  2    a usage, input or damaged-file error: one line on stderr naming the file or value and the fix
  130  interrupted by Ctrl-C (SIGINT)
  143  interrupted by SIGTERM (kill, a scheduler): handled as Ctrl-C is. Either way one line is
       printed, temporary files are removed, and the work done so far is kept: finetune and
       extract continue with --resume (finetune's train.log records the interruption)"""


def _command_modules() -> list[ModuleType]:
    mods = [
        importlib.import_module(f"tlkit.cli.commands.{m.name}")
        for m in pkgutil.iter_modules(_commands_pkg.__path__)
        if not m.name.startswith("_")
    ]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full parser; building it imports no TensorFlow."""
    parser = _Parser(
        prog="tlkit",
        description="Don't be a hero: take an ImageNet-pretrained model and finetune it on your images.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tlkit {tlkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP), formatter_class=_HelpFormatter
        )
        mod.add_arguments(p)
        p.add_argument(
            "--verbose", action="store_true", help="show TensorFlow's start-up and runtime logging (hidden by default)"
        )
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")).strip()
    return text or type(exc).__name__


def _os_error_text(exc: OSError) -> str:
    """An OS error as a person reads it: what went wrong and on which path."""
    if exc.strerror:
        paths = [p for p in (exc.filename, exc.filename2) if p]
        return f"{exc.strerror}: {' -> '.join(map(str, paths))}" if paths else exc.strerror
    return _one_line(exc)


def use_system_allocator_for_arrow() -> None:
    """Have pandas' Arrow-backed columns allocate with malloc, unless the user chose otherwise.

    Arrow's default pool (mimalloc) keeps what it freed: listing 200,000 files left about 58 MB
    more resident than with the system allocator, memory that TensorFlow then comes on top of
    (``benchmarks/bench_scale.py``). Set before pyarrow is imported; a command-line setting only
    (a library caller keeps its own process' choice).
    """
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlkit`` console script.

    Exit status: 0 done; 2 a usage or input error (one line on stderr); 1 a bug (traceback
    shown), or a check that ran and found problems (``check-data --strict``, a failed export
    verification, no model matching a pattern); 130 interrupted by SIGINT (Ctrl-C), 143 by
    SIGTERM (``kill``): 128 + the signal's number, as a shell reports it. Both take the same path
    (work kept for ``--resume``, temporary files removed) and print one line.
    """
    use_system_allocator_for_arrow()
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for commands that start copies of themselves
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    verbose = bool(getattr(args, "verbose", False) or os.environ.get("TLKIT_VERBOSE"))
    if verbose:
        os.environ["TLKIT_VERBOSE"] = "1"  # for library code and the processes it starts
    try:
        _signals.sigterm_as_sigint()
        install_quiet_import_hook(verbose)
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # `tlkit ... | head`: the reader has all it wanted. Quiet, as shell tools are (128 + SIGPIPE).
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except TlkitError as exc:
        if os.environ.get("TLKIT_DEBUG"):
            raise
        print(f"tlkit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if os.environ.get("TLKIT_DEBUG"):
            raise
        print(f"tlkit {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; run the same command with --resume to continue" if getattr(args, "resume", None) is not None else ""
        print(f"tlkit {args.command}: interrupted ({_signals.interrupting_name()}){hint}", file=sys.stderr)
        return _signals.interrupted_exit_code()
    except Exception:
        traceback.print_exc()
        print(
            f"tlkit {args.command}: this is a bug in tlkit, not in your input; please report it with the "
            f"traceback above and the command you ran",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    from tlkit.cli.main import (
        main as _main,  # the package's module, so its error classes are the ones raised
    )

    sys.exit(_main())
