"""``FinetuneConfig``: the one source of a finetuning run's settings and their defaults.

Each field carries its command-line form in ``dataclasses.field`` metadata (help text, the
name of a value parser in :mod:`tlkit.cli.commands._argtypes`, choices); ``tlkit finetune``
derives its flags from :func:`cli_fields`, so a default is written here and nowhere else.
No Keras, no TensorFlow, no argparse: the CLI imports this module to build ``--help``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlkit.errors import ConfigError
from tlkit.finetune.rundir import RunDir

RUNS_DIR = Path("runs")


def _opt(
    default: Any,
    help: str,
    *,
    kind: str = "str",
    choices: tuple[str, ...] | None = None,
    metavar: str | tuple[str, ...] | None = None,
    flag: str | None = None,
    shown: str | None = None,
    negate: str | None = None,
    none_word: bool = False,
) -> Any:
    """A field with its CLI form.

    ``kind``: the value parser's name in ``_argtypes`` (``flag`` for booleans); ``flag``: the
    option name when it is not ``--field-name`` (``--no-flip`` for ``flip``); ``shown``: what
    ``--help`` says for a ``None`` default that means "derived"; ``negate``: an extra switch that
    sets the field to ``None`` (``--no-augment``); ``none_word``: the value ``none`` means ``None``
    (``--weights none``; also implied by a ``"none"`` among ``choices``).
    """
    meta = {
        "help": help,
        "kind": kind,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "shown": shown,
        "negate": negate,
        "none_word": none_word or "none" in (choices or ()),
    }
    return field(default=default, metadata=meta)


@dataclass
class FinetuneConfig:
    """Everything that defines a finetuning run; written to the run's ``config.json``."""

    data: str = field(
        metadata={
            "help": "folder of class subfolders, a CSV manifest (path,label[,split]; path,labels[,split] "
            "for multi-label data, names separated by |), "
            "tfds:NAME, builtin:digits / builtin:faces, or a folder written by tlkit prepare",
            "kind": "str",
            "required": True,
        }
    )
    base: str = _opt("efficientnet_lite0", "registry name of the pretrained base (with --resume: the run's own)")
    weights: str | None = _opt("imagenet", "'imagenet', a local weights file, or 'none'", none_word=True)
    name: str | None = _opt(None, "run name", shown="BASE-DATA")
    runs_dir: str = _opt(str(RUNS_DIR), "parent folder of run directories")
    input_size: tuple[int, int] | None = _opt(
        None, "input height and width", kind="image_side", metavar=("H", "W"), shown="the base's own"
    )
    batch_size: int = _opt(32, "images per training step (multi-worker: the global batch)", kind="positive_int")
    epochs: int = _opt(5, "stage 1 epochs (head only)", kind="non_negative_int")
    finetune_epochs: int = _opt(5, "stage 2 epochs (top blocks unfrozen)", kind="non_negative_int")
    unfreeze: str = _opt("2", "top blocks to unfreeze in stage 2: N, or 'all'; 0 = head only")
    lr: float = _opt(1e-3, "stage 1 learning rate", kind="positive_float")
    finetune_lr: float | None = _opt(None, "stage 2 learning rate", kind="positive_float", shown="lr / 10")
    optimizer: str = _opt("adam", "optimizer; sgd uses --momentum", choices=("adam", "sgd"))
    momentum: float = _opt(0.9, "SGD momentum", kind="fraction")
    weight_decay: float = _opt(0.0, "decoupled weight decay", kind="non_negative_float")
    schedule: str = _opt(
        "none",
        "learning-rate schedule; step: /10 every --step-epochs; plateau: /10 when val loss stalls",
        choices=("none", "step", "plateau", "cosine"),
    )
    step_epochs: int = _opt(10, "epochs between /10 steps of --schedule step", kind="positive_int")
    early_stopping: int = _opt(
        0,
        "stop a stage after this many epochs without a better val loss; 0 = off",
        kind="non_negative_int",
        metavar="PATIENCE",
    )
    dropout: float = _opt(0.2, "dropout before the head's Dense layers", kind="fraction")
    hidden_units: int = _opt(
        0, "units of an optional hidden Dense layer in the head; 0 = none", kind="non_negative_int"
    )
    augment: str | None = _opt(
        "crop",
        "random resized crop, or VGG scale jitter (both with flip and colour jitter)",
        choices=("crop", "scale"),
        negate="--no-augment",
    )
    flip: bool = _opt(
        True,
        "horizontal flips in augmentation; --no-flip for digits, text, other handed data",
        kind="flag",
        flag="--no-flip",
    )
    val_split: float = _opt(0.2, "fraction of the data held out for validation when it has no split", kind="fraction")
    seed: int = _opt(0, "seed of splits, augmentation, initialisation and sampling", kind="int")
    class_weight: str | None = _opt(
        None, "auto: loss weights inversely proportional to class counts", choices=("auto", "none")
    )
    train_batchnorm: bool = _opt(
        False,
        "also train BatchNorm in stage 2: scale/offset, on batch statistics (synchronized over --workers)",
        kind="flag",
    )
    find_lr: bool = _opt(False, "run an LR range test first, plot it, and train at the suggested rate", kind="flag")
    tensorboard: bool = _opt(
        False,
        "write TensorBoard logs to RUN/tensorboard/ (kept on --resume): per epoch the loss, accuracy, "
        "validation metrics and learning rate, and the validation confusion matrix as an image "
        "(one more prediction pass over the validation split per epoch, except multi-worker); "
        "view with: tensorboard --logdir RUN/tensorboard",
        kind="flag",
    )
    distribute: str | None = _opt(
        None,
        "tf.distribute strategy: mirrored (this machine's GPUs) or multi-worker "
        "(the workers a cluster manager names in TF_CONFIG; --batch-size is the "
        "global batch)",
        choices=("mirrored", "multi-worker"),
    )
    mixed_precision: str = _opt("auto", "float16 compute: auto = on with a GPU", choices=("auto", "on", "off"))
    tfds_data_dir: str | None = _opt(None, "folder with prepared TFDS datasets", shown="TFDS's own")
    cache_dir: str | None = _opt(
        None, "tlkit's cache folder (builtin datasets, file checks)", shown="$TLKIT_HOME, else ~/.cache/tlkit"
    )
    deterministic: bool = _opt(
        True,
        "bit-reproducible ops on CPU: the same seed and data give the same metrics, and a one-process run "
        "stopped (Ctrl-C, SIGTERM, SIGKILL) and continued with --resume gives the uninterrupted run's history "
        "and weights, except with --cache, tfds: data or in stage 1 of --cache-features (their shuffle "
        "restarts) and with --schedule plateau or --early-stopping (their patience counts restart); "
        "--no-deterministic trades exactness for speed",
        kind="flag",
        flag="--no-deterministic",
    )
    cache_features: bool = _opt(
        False, "stage 1 on the frozen base's features computed once (no augmentation in stage 1)", kind="flag"
    )
    check_sample: int = _opt(
        0,
        "decode only a seeded sample of N files before training (millions of images); "
        "the others are used unchecked and one that does not decode is skipped by the "
        "input pipeline",
        kind="positive_int",
        metavar="N",
        shown="every file",
    )
    leaks: str = _opt(
        "drop",
        "validation/test files identical to training files: drop leaves them out (copies of "
        "training images inflate validation accuracy), keep keeps them, fail stops (exit 2)",
        choices=("drop", "keep", "fail"),
    )
    multi_label: bool = _opt(
        False,
        "multi-label data from folders: one folder per label; an image in several label folders (a hard "
        "link, a symlink or the same bytes) is one image with all those labels (a CSV with a 'labels' "
        "column is multi-label without this flag)",
        kind="flag",
    )
    cache: str | None = _opt(
        None,
        "keep the decoded, resized images (uint8, before augmentation) after the first "
        "epoch: 'mem' for memory or a folder for cache files; later epochs decode "
        "nothing (see --cache-budget)",
        metavar="mem|DIR",
        shown="off",
    )
    cache_budget: str = _opt(
        "2GiB",
        "most bytes --cache may hold per split, e.g. 500MiB, 2GiB; data that does "
        "not fit runs without the cache, with a message",
        kind="byte_size",
        metavar="SIZE",
    )

    def run_dir(self) -> Path:
        """``runs_dir/name`` (default name: BASE-DATA); raises RunDirError for a name that is not one folder."""
        name = self.name if self.name is not None else f"{self.base}-{_slug(self.data)}"
        from tlkit.storage.remote import is_remote

        if is_remote(self.runs_dir):  # trained in a local staging copy, published to the store
            from tlkit.finetune.rundir import check_run_name
            from tlkit.finetune.store_runs import staging_root

            return staging_root(self.runs_dir, self.cache_dir) / check_run_name(name)
        return RunDir.at(self.runs_dir, name).path


def shown_run(cfg: FinetuneConfig, path: str | Path) -> str:
    """The run as the user named it: its URL for a run on an object store (trained in a staging copy)."""
    from tlkit.storage.remote import is_remote, join

    return join(cfg.runs_dir, Path(path).name) if is_remote(cfg.runs_dir) else str(path)


def cli_fields() -> list[dataclasses.Field]:
    """The fields in flag order (all of them: every setting is reachable from ``tlkit finetune``)."""
    return list(dataclasses.fields(FinetuneConfig))


def option_name(f: dataclasses.Field) -> str:
    """The command-line option of a field: ``--batch-size`` for ``batch_size``, or its ``flag``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def default_text(f: dataclasses.Field) -> str | None:
    """How ``--help`` states a field's default (None: the field is required)."""
    if f.default is dataclasses.MISSING:
        return None
    if f.metadata.get("kind") == "flag":
        return "on" if f.default else "off"
    if f.default is None or f.metadata.get("shown"):
        return f.metadata.get("shown") or "none"
    return str(f.default)


def _slug(data: str) -> str:
    tail = data.rstrip("/").replace(":", "-").split("/")[-1] or "data"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)


def same_data(a: str, b: str) -> bool:
    """Whether two ``--data`` values name the same source (``shapes``, ``./shapes`` and ``shapes/`` do)."""
    if a == b:
        return True
    if "://" in a or "://" in b:  # URLs (gs://, s3://) are compared as written, less a trailing /
        return a.rstrip("/") == b.rstrip("/")
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


def check_config(cfg: FinetuneConfig) -> None:
    """Flag values that make a run impossible, refused before anything starts."""
    import tlkit

    tlkit.get_spec(cfg.base)  # unknown base: the error lists close names
    if cfg.unfreeze != "all" and not str(cfg.unfreeze).isdigit():
        raise ConfigError(f"--unfreeze must be a number of blocks or 'all', got {cfg.unfreeze!r}")
    if cfg.class_weight not in (None, "none", "auto"):
        raise ConfigError(f"--class-weight must be 'auto' or 'none', got {cfg.class_weight!r}")
    if cfg.cache and "://" in str(cfg.cache) and not str(cfg.cache).startswith("file://"):
        raise ConfigError(
            f"--cache {cfg.cache}: the decoded-image cache is a local folder (tf.data reads its cache files "
            "back every epoch); pass a local folder, or --cache mem, also with --data on gs:// or s3://"
        )
    if cfg.distribute == "multi-worker" and (cfg.find_lr or cfg.cache_features):
        flag = "--find-lr" if cfg.find_lr else "--cache-features"
        raise ConfigError(
            f"{flag} runs on one process: find the rate or train the head without "
            f"--distribute multi-worker, then run the multi-worker job with --lr"
        )
    if cfg.epochs <= 0 and (cfg.finetune_epochs <= 0 or str(cfg.unfreeze) == "0"):
        raise ConfigError(
            f"nothing to train: --epochs {cfg.epochs} and --finetune-epochs {cfg.finetune_epochs} "
            f"(--unfreeze {cfg.unfreeze}); pass --epochs N for the head and/or --finetune-epochs N with "
            f"--unfreeze N|all for the top blocks"
        )
