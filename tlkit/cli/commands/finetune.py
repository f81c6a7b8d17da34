"""``tlkit finetune``: staged finetuning of a pretrained base on your images."""

from __future__ import annotations

import argparse
import os

from tlkit.cli.commands._argtypes import (
    fraction,
    image_side,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

NAME = "finetune"
HELP = "finetune a pretrained base on a folder, CSV manifest, TFDS or builtin dataset"
DESCRIPTION = ("Stage 1 trains a new head on the frozen base; stage 2 unfreezes the top blocks at a tenth "
               "of the learning rate (BatchNorm stays in inference mode). Writes runs/NAME/.")
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="registry name of the pretrained base (default: efficientnet_lite0; with "
                                  "--resume: the run's own)")
    p.add_argument("--data", required=True,
                   help="folder of class subfolders, a CSV manifest (path,label[,split]), tfds:NAME, or "
                        "builtin:digits / builtin:faces")
    p.add_argument("--weights", default="imagenet", help="'imagenet', a local weights file, or 'none'")
    p.add_argument("--name", help="run name (default: BASE-DATA)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of run directories")
    p.add_argument("--input-size", nargs=2, type=image_side, metavar=("H", "W"), help="default: the base's own")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--epochs", type=non_negative_int, default=5, help="stage 1 epochs (head only)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=5, help="stage 2 epochs (top blocks unfrozen)")
    p.add_argument("--unfreeze", default="2", help="top blocks to unfreeze in stage 2: N, or 'all'; 0 = head only")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="stage 1 learning rate")
    p.add_argument("--finetune-lr", type=positive_float, help="stage 2 learning rate (default: lr / 10)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="sgd uses momentum 0.9")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--schedule", choices=["none", "step", "plateau", "cosine"], default="none",
                   help="step: /10 every --step-epochs; plateau: /10 when val loss stalls")
    p.add_argument("--step-epochs", type=positive_int, default=10)
    p.add_argument("--early-stopping", type=non_negative_int, default=0, metavar="PATIENCE", help="0 = off")
    p.add_argument("--dropout", type=fraction, default=0.2)
    p.add_argument("--hidden-units", type=non_negative_int, default=0, help="optional hidden Dense layer in the head")
    p.add_argument("--augment", choices=["crop", "scale"], default="crop",
                   help="random resized crop, or VGG scale jitter (both with flip and colour jitter)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (digits, text: handedness matters)")
    p.add_argument("--val-split", type=fraction, default=0.2)
    p.add_argument("--leaks", choices=["drop", "keep", "fail"], default="drop",
                   help="validation/test files identical to training files: drop leaves them out (the default: "
                        "copies of training images inflate validation accuracy), keep keeps them, fail stops (exit 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-weight", choices=["auto", "none"], default="none",
                   help="auto: weights inversely proportional to class counts")
    p.add_argument("--train-batchnorm", action="store_true", help="also train BatchNorm scale/offset in stage 2")
    p.add_argument("--find-lr", action="store_true",
                   help="run an LR range test first, plot it, and train at the suggested rate")
    p.add_argument("--cache-features", action="store_true",
                   help="stage 1 on the frozen base's features computed once (no augmentation in stage 1)")
    from tlkit.data.cache import BUDGET_HELP, CACHE_HELP, DEFAULT_BUDGET

    p.add_argument("--cache", metavar="mem|DIR", help=CACHE_HELP)
    p.add_argument("--cache-budget", metavar="SIZE", default=DEFAULT_BUDGET, help=BUDGET_HELP)
    p.add_argument("--distribute", choices=["mirrored", "multi-worker"],
                   help="tf.distribute strategy: mirrored (this machine's GPUs) or multi-worker (the workers a "
                        "cluster manager names in TF_CONFIG; --batch-size is the global batch)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="start N local workers on loopback (a multi-worker job on one machine, to try it)")
    p.add_argument("--mixed-precision", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--check-sample", type=positive_int, metavar="N",
                   help="decode only a seeded sample of N files before training (millions of images); the others "
                        "are used unchecked and one that does not decode is skipped by the input pipeline")
    p.add_argument("--tfds-data-dir", help="folder with prepared TFDS datasets")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (same --data and --base; the other "
                        "settings come from the run's config.json)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run (only a tlkit run or an empty folder; the old run is deleted once "
                        "the new one has its first checkpoint, and put back if it fails before)")
    p.add_argument("--quiet", action="store_true")


def config_from_args(args: argparse.Namespace) -> "object":
    from tlkit.finetune.pipeline import FinetuneConfig

    return FinetuneConfig(
        data=args.data, **({"base": args.base} if args.base else {}), weights=None if args.weights == "none" else args.weights,
        name=args.name, runs_dir=args.runs_dir,
        input_size=tuple(args.input_size) if args.input_size else None, batch_size=args.batch_size,
        epochs=args.epochs, finetune_epochs=args.finetune_epochs, unfreeze=str(args.unfreeze), lr=args.lr,
        finetune_lr=args.finetune_lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
        schedule=args.schedule, step_epochs=args.step_epochs, early_stopping=args.early_stopping,
        dropout=args.dropout, hidden_units=args.hidden_units, augment=None if args.no_augment else args.augment, flip=not args.no_flip,
        val_split=args.val_split, seed=args.seed, class_weight=args.class_weight,
        train_batchnorm=args.train_batchnorm, find_lr=args.find_lr, distribute=args.distribute,
        mixed_precision=args.mixed_precision, tfds_data_dir=args.tfds_data_dir,
        cache_features=args.cache_features, cache=args.cache, cache_budget=_budget(args.cache_budget),
        leaks=args.leaks, check_sample=args.check_sample or 0)


def _budget(text: str) -> str:
    from tlkit.data.cache import parse_budget

    parse_budget(text)  # a typo stops here, before any data is read
    return text


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _launch(args: argparse.Namespace) -> int:
    """``--workers N``: the same command as N processes of one multi-worker job."""
    from tlkit.distribute import launch_local_workers
    from tlkit.errors import ConfigError

    if args.distribute == "mirrored":
        raise ConfigError("--workers starts a multi-worker job; it does not go with --distribute mirrored")
    # The checks that need no TensorFlow, once, here: a mistake is one line, before any worker starts.
    from tlkit.data import pipeline as tldata
    from tlkit.finetune.pipeline import check_before_start

    cfg = config_from_args(args)
    cfg.distribute = "multi-worker"
    cfg = check_before_start(cfg, resume=args.resume, force=args.force,
                             must_match=("data", "base") if args.base else ("data",))
    tldata.resolve(cfg.data, val_split=cfg.val_split, seed=cfg.seed, tfds_data_dir=cfg.tfds_data_dir,
                   cache_dir=cfg.cache_dir)
    argv, skip = [], False
    for a in args._argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            argv.append(a)
    if args.distribute is None:
        argv += ["--distribute", "multi-worker"]
    return launch_local_workers(argv, args.workers, log=lambda m: None if args.quiet else print(m, flush=True))


def run(args: argparse.Namespace) -> int:
    import signal

    from tlkit.finetune.pipeline import finetune

    # `kill` and schedulers send SIGTERM: handled like Ctrl-C, so the run directory is released
    # (lock removed, temporary files deleted, a replaced run put back) before the exit.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    if args.workers and not os.environ.get("TF_CONFIG"):
        return _launch(args)
    must_match = ("data", "base") if args.base else ("data",)
    metrics = finetune(config_from_args(args), resume=args.resume, force=args.force, quiet=args.quiet,
                       must_match=must_match)
    return 0 if metrics else 1
