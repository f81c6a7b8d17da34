"""FinetuneConfig is the one source of defaults: every field has a flag, --help states the dataclass's default."""

import dataclasses
import re
import subprocess
import sys

import pytest

from tlkit.cli import main as cli
from tlkit.cli.commands.finetune import config_from_args
from tlkit.finetune.config import FinetuneConfig

FIELDS = dataclasses.fields(FinetuneConfig)


def _finetune_parser():
    parser = cli.build_parser()
    return parser._subparsers._group_actions[0].choices["finetune"]


def _help_entries() -> dict[str, str]:
    """``tlkit finetune --help`` (run as the user runs it) as {option: its help, whitespace joined}."""
    code = (
        "import sys, tlkit.cli.main\ntry:\n    tlkit.cli.main.main(['finetune', '--help'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\nprint('TF_LOADED', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "TF_LOADED False" in out.stdout  # --help builds its flags from the dataclass without TensorFlow
    entries: dict[str, list[str]] = {}
    current = None
    for line in out.stdout.split("options:", 1)[1].splitlines():
        m = re.match(r"^  (--[a-z-]+)(.*)$", line)
        if m:
            current = m.group(1)
            entries[current] = [m.group(2)]
        elif current and line.startswith("    "):
            entries[current].append(line)
    return {k: " ".join(" ".join(v).split()) for k, v in entries.items()}


def test_every_field_has_a_flag():
    dests = {a.dest for a in _finetune_parser()._actions}
    missing = [f.name for f in FIELDS if f.name not in dests]
    assert missing == []
    assert len(FIELDS) == 39  # a new field shows up here: give it help text and a parser kind


def _expected_default(f: dataclasses.Field) -> str:
    # Stated independently of tlkit.finetune.config.default_text, from the dataclass itself.
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    if f.default is None:
        return f.metadata.get("shown") or "none"
    return f.metadata.get("shown") or str(f.default)


def test_help_shows_each_dataclass_default():
    entries = _help_entries()
    for f in FIELDS:
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if f.default is dataclasses.MISSING:
            assert f.name == "data" and "(default:" not in entries[flag]
            continue
        assert entries[flag].endswith(f"(default: {_expected_default(f)})"), (f.name, entries[flag])
    assert not any("default: None" in text for text in entries.values())


def test_parsed_defaults_build_the_dataclass_defaults():
    args = cli.build_parser().parse_args(["finetune", "--data", "shapes"])
    assert config_from_args(args) == FinetuneConfig(data="shapes")


NON_DEFAULT = {
    "base": (["--base", "resnet50"], "resnet50"),
    "weights": (["--weights", "none"], None),
    "name": (["--name", "r1"], "r1"),
    "runs_dir": (["--runs-dir", "elsewhere"], "elsewhere"),
    "input_size": (["--input-size", "64", "48"], (64, 48)),
    "batch_size": (["--batch-size", "8"], 8),
    "epochs": (["--epochs", "0"], 0),
    "finetune_epochs": (["--finetune-epochs", "2"], 2),
    "unfreeze": (["--unfreeze", "all"], "all"),
    "lr": (["--lr", "0.5"], 0.5),
    "finetune_lr": (["--finetune-lr", "0.25"], 0.25),
    "optimizer": (["--optimizer", "sgd"], "sgd"),
    "momentum": (["--momentum", "0.5"], 0.5),
    "weight_decay": (["--weight-decay", "0.01"], 0.01),
    "schedule": (["--schedule", "cosine"], "cosine"),
    "step_epochs": (["--step-epochs", "3"], 3),
    "early_stopping": (["--early-stopping", "4"], 4),
    "dropout": (["--dropout", "0.5"], 0.5),
    "hidden_units": (["--hidden-units", "16"], 16),
    "augment": (["--augment", "scale"], "scale"),
    "flip": (["--no-flip"], False),
    "val_split": (["--val-split", "0.3"], 0.3),
    "seed": (["--seed", "7"], 7),
    "class_weight": (["--class-weight", "auto"], "auto"),
    "train_batchnorm": (["--train-batchnorm"], True),
    "find_lr": (["--find-lr"], True),
    "tensorboard": (["--tensorboard"], True),
    "distribute": (["--distribute", "mirrored"], "mirrored"),
    "mixed_precision": (["--mixed-precision", "off"], "off"),
    "tfds_data_dir": (["--tfds-data-dir", "t"], "t"),
    "cache_dir": (["--cache-dir", "c"], "c"),
    "deterministic": (["--no-deterministic"], False),
    "cache_features": (["--cache-features"], True),
    "check_sample": (["--check-sample", "9"], 9),
    "leaks": (["--leaks", "fail"], "fail"),
    "multi_label": (["--multi-label"], True),
    "cache": (["--cache", "mem"], "mem"),
    "cache_budget": (["--cache-budget", "500MiB"], "500MiB"),
}


def test_every_field_is_settable_from_the_command_line():
    assert set(NON_DEFAULT) == {f.name for f in FIELDS} - {"data"}
    argv = ["finetune", "--data", "shapes"] + [a for flags, _ in NON_DEFAULT.values() for a in flags]
    cfg = config_from_args(cli.build_parser().parse_args(argv))
    for name, (_, want) in NON_DEFAULT.items():
        assert getattr(cfg, name) == want, name
        assert want != getattr(FinetuneConfig(data="x"), name), name  # the test really moves each field


@pytest.mark.parametrize(
    "argv, want",
    [
        (["--no-augment"], None),
        (["--augment", "scale", "--no-augment"], None),
        (["--no-augment", "--augment", "scale"], None),  # as before: --no-augment wins in any order
        (["--class-weight", "none"], None),
    ],
)
def test_none_switches(argv, want):
    cfg = config_from_args(cli.build_parser().parse_args(["finetune", "--data", "d", *argv]))
    field = "augment" if "augment" in " ".join(argv) else "class_weight"
    assert getattr(cfg, field) == want
