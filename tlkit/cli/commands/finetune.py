"""``tlkit finetune``: staged finetuning of a pretrained base on your images."""

from __future__ import annotations

import argparse
import os

from tlkit.cli.commands._argtypes import by_kind, positive_int

NAME = "finetune"
HELP = "finetune a pretrained base on a folder, CSV manifest, TFDS or builtin dataset"
DESCRIPTION = (
    "Stage 1 trains a new head on the frozen base; stage 2 unfreezes the top blocks at a tenth "
    "of the learning rate (BatchNorm stays in inference mode unless --train-batchnorm). Writes runs/NAME/."
)
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~tlkit.finetune.config.FinetuneConfig` field, then how this command runs."""
    from tlkit.finetune.config import cli_fields

    add_config_flags(p, cli_fields())
    _add_run_flags(p)


def add_config_flags(p: argparse.ArgumentParser, fields: list) -> None:
    """One flag per config field (``_opt`` metadata; also ``tlkit segment finetune``'s).

    Config flags default to "not given" (absent from the namespace): the dataclass fills in its
    own defaults, and ``--help`` shows them as the dataclass states them.
    """
    from tlkit.finetune.config import default_text, option_name

    for f in fields:
        m = f.metadata
        shown = default_text(f)
        help_text = (m["help"] + (f" (default: {shown})" if shown is not None else "")).replace("%", "%%")
        if m["kind"] == "flag":
            p.add_argument(
                option_name(f),
                dest=f.name,
                action="store_const",
                const=not f.default,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        kw: dict = {"dest": f.name, "type": by_kind(m["kind"]), "help": help_text}
        if m.get("required"):
            kw["required"] = True
        else:
            kw["default"] = argparse.SUPPRESS
        if m.get("choices"):
            kw["choices"] = list(m["choices"])
        if m.get("metavar"):
            kw["metavar"] = m["metavar"]
        if isinstance(m.get("metavar"), tuple):
            kw["nargs"] = len(m["metavar"])
        p.add_argument(option_name(f), **kw)
        if m.get("negate"):
            p.add_argument(
                m["negate"],
                dest=f"{f.name}__none",
                action="store_true",
                default=argparse.SUPPRESS,
                help=f"no {option_name(f)}: sets it to none",
            )


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="start N local workers on loopback (a multi-worker job on one machine, to try it)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last checkpoint (same --data and --base; the other "
        "settings come from the run's config.json)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing run (only a tlkit run or an empty folder; the old run is deleted once "
        "the new one has its first checkpoint, and put back if it fails before)",
    )
    p.add_argument(
        "--break-lock",
        action="store_true",
        help="--runs-dir on gs:// or s3://: delete the run's lock left by a process on another machine that "
        "is gone (a lock from a dead process on this machine is taken over without it)",
    )
    p.add_argument("--quiet", action="store_true")


def config_values(args: argparse.Namespace, fields: list | None = None) -> dict:
    """The config fields the command line gave (``none`` words and ``--no-X`` switches applied)."""
    from tlkit.finetune.config import cli_fields

    given: dict = {}
    for f in cli_fields() if fields is None else fields:
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            if f.metadata.get("none_word") and value == "none":
                value = None
            elif isinstance(value, list):
                value = tuple(value)
            given[f.name] = value
        if getattr(args, f"{f.name}__none", False):
            given[f.name] = None  # --no-augment wins over --augment, in any order
    return given


def config_from_args(args: argparse.Namespace) -> object:
    """The :class:`~tlkit.finetune.config.FinetuneConfig` of the parsed command line."""
    from tlkit.finetune.config import FinetuneConfig

    return FinetuneConfig(**config_values(args))


def _must_match(args: argparse.Namespace) -> tuple[str, ...]:
    # --base given: a resume checks it against the run's; not given: the run's own is used.
    return ("data", "base") if getattr(args, "base", None) else ("data",)


def _launch(args: argparse.Namespace) -> int:
    """``--workers N``: the same command as N processes of one multi-worker job."""
    from tlkit.distribute import launch_local_workers
    from tlkit.errors import ConfigError

    if getattr(args, "distribute", None) == "mirrored":
        raise ConfigError("--workers starts a multi-worker job; it does not go with --distribute mirrored")
    # The checks that need no TensorFlow, once, here: a mistake is one line, before any worker starts.
    from tlkit.finetune.pipeline import check_before_start, resolve_data

    cfg = config_from_args(args)
    cfg.distribute = "multi-worker"
    cfg = check_before_start(cfg, resume=args.resume, force=args.force, must_match=_must_match(args))
    resolve_data(cfg)
    argv, skip = [], False
    for a in args._argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            argv.append(a)
    if getattr(args, "distribute", None) is None:
        argv += ["--distribute", "multi-worker"]
    return launch_local_workers(argv, args.workers, log=lambda m: None if args.quiet else print(m, flush=True))


def run(args: argparse.Namespace) -> int:
    from tlkit.finetune.pipeline import finetune

    # SIGTERM is handled as Ctrl-C by tlkit.cli.main, so the run directory is released
    # (lock removed, temporary files deleted, a replaced run put back) before the exit.
    if args.workers and not os.environ.get("TF_CONFIG"):
        return _launch(args)
    metrics = finetune(
        config_from_args(args),
        resume=args.resume,
        force=args.force,
        quiet=args.quiet,
        must_match=_must_match(args),
        break_lock=args.break_lock,
    )
    return 0 if metrics else 1
