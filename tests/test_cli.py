"""The CLI answers fast and never imports TensorFlow just to show help."""

import json
import subprocess
import sys

import pytest

from tlkit.cli import main as cli


def test_parser_imports_no_tensorflow():
    code = (
        "import sys, tlkit.cli.main; p = tlkit.cli.main.build_parser(); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["inspect", "--help"]])
def test_help_answers_without_tensorflow(argv):
    code = (
        f"import sys, tlkit.cli.main\ntry:\n    tlkit.cli.main.main({argv!r})\nexcept SystemExit as e:\n"
        f"    assert e.code == 0, e.code\nprint('TF_LOADED', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "usage: tlkit" in out.stdout
    assert "TF_LOADED False" in out.stdout


def test_every_subcommand_has_help_without_tensorflow():
    parser = cli.build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]
    assert {"models", "inspect"} <= set(names)
    code = (
        f"import sys, tlkit.cli.main\nfor c in {names!r}:\n    try:\n        tlkit.cli.main.main([c, '--help'])\n"
        "    except SystemExit as e:\n        assert e.code == 0, (c, e.code)\n"
        "print('TF_LOADED', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "TF_LOADED False" in out.stdout


def test_models_json_lists_registry(capsys):
    assert cli.main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {d["name"]: d for d in data}
    assert by_name["vgg16"]["params"] == 138_357_544
    assert by_name["vgg16"]["imagenet_weights"] is True
    assert by_name["alexnet"]["input_size"] == [227, 227, 3]
    assert by_name["lenet5"]["imagenet_weights"] is False


def test_models_family_filter(capsys):
    assert cli.main(["models", "--family", "vgg", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["family"] for d in data} == {"vgg"}
    assert {d["name"] for d in data} == {"vgg11", "vgg11_lrn", "vgg13", "vgg16c", "vgg16_tlkit", "vgg19_tlkit"}


def test_unknown_model_lists_close_matches(capsys):
    assert cli.main(["inspect", "resnt50"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnt50'" in err and "resnet50" in err


def test_unknown_family_names_known_ones(capsys):
    assert cli.main(["models", "--family", "transformers"]) == 2
    err = capsys.readouterr().err
    assert "transformers" in err and "vgg" in err


@pytest.mark.parametrize(("given", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_gives_arrow_the_system_allocator_unless_the_user_chose(given, expected):
    """Pandas' Arrow columns allocate with malloc in a tlkit command (mimalloc kept ~58 MB of a
    200,000-file listing resident, bench_scale.py); a user's ARROW_DEFAULT_MEMORY_POOL wins."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    code = (
        "from tlkit.cli.main import main; import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['models'])\n"
        "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert p.stdout.strip().splitlines()[-1] == expected
