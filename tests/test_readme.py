"""The README works as written: its marked commands run in order on a fresh folder, its pictures
exist, its CLI table lists every subcommand and its API listing names real functions."""

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_readme_figures import check_advise_block, check_fresh_history, read_history

from tlkit.cli import main as cli

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "<!-- test -->"
MAIN_JOB_RUN = "runs/efficientnet_lite0-builtin-digits"

# What a step's output must show (a substring of the step -> substrings of its stdout).
EXPECT = {
    "tlkit advise --data builtin:digits": ["small-different", "--unfreeze all --lr 3e-3 --no-augment --no-flip"],
    "tlkit check-data builtin:digits": ["1797 usable"],
    "tlkit evaluate": ["top-1"],
    "tlkit predict --base efficientnet_lite0 chelsea.jpg": ["cat"],
    "tlkit probe": ["held-out accuracy"],
    "tlkit export": ["verified", "tflite check on", "top-1 on", "(with image-classifier metadata"],
    "saved_model_cli show": ["image_bytes", "top_k_labels"],
    "--resume": ["nothing to resume"],
    "--force": ["refused: no such data", "the finished run is untouched"],
    "--max-pixels": ["refused: over the pixel limit"],
    "--leaks keep": ["usable"],
}


def fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language, body, marked) of every fenced block; marked: the line before is ``<!-- test -->``."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while lines[j].rstrip() != "```":
                j += 1
            marked = i > 0 and lines[i - 1].strip() == MARK
            out.append((m.group(1), "\n".join(lines[i + 1 : j]), marked))
            i = j
        i += 1
    return out


def setup_main_job(blocks: list[tuple[str, str, bool]]) -> str:
    """The first set-up block is venv && pip install && the main job: run only the main job."""
    first = [b for lang, b, _ in blocks if lang == "bash"][0]
    job = first.split("&&")[-1].strip()
    assert job.startswith(".venv/bin/tlkit finetune"), job
    return job.removeprefix(".venv/bin/")


def steps() -> list[str]:
    """The commands to run, in README order: the main job, then every marked bash block."""
    blocks = fenced_blocks(README.read_text())
    return [setup_main_job(blocks)] + [b for lang, b, marked in blocks if marked and lang == "bash"]


def test_setup_blocks_are_the_two_ci_commands():
    bash = [b for lang, b, _ in fenced_blocks(README.read_text()) if lang == "bash"]
    assert bash[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/tlkit finetune")
    assert (
        bash[1] == "python3 -m venv .venv && "
        '.venv/bin/pip install -e ".[test,beam,heic,deploy,cloud,dataflow]" && .venv/bin/pytest -q -n 2 --dist loadfile'
    )


def test_readme_commands_run_in_order(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done, outputs = [], {}
    for step in steps():
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", step], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"README step failed:\n{step}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        for key, wants in EXPECT.items():
            if key in step:
                for want in wants:
                    assert want in proc.stdout, f"{key!r}: {want!r} not in output:\n{proc.stdout[-3000:]}"
        if step.strip() == "tlkit advise --data builtin:digits":
            check_advise_block(proc.stdout)  # the README shows what advise prints, figures included
        done.append(step)
        outputs[step] = proc.stdout
    assert (tmp_path / MAIN_JOB_RUN / "metrics.json").is_file()
    # The README's curves (docs/images/curves.png) are the ones this fresh main job draws.
    check_fresh_history(read_history(tmp_path / MAIN_JOB_RUN / "history.csv"))
    with Image.open(tmp_path / "heatmap.png") as im:
        im.load()
    assert (tmp_path / "saved_models" / "digits" / "1" / "saved_model.pb").is_file()
    query = next(out for step, out in outputs.items() if "serving_default" in step and "digit.png" in step)
    assert "label 0" in query  # the served model reads the handwritten 0
    assert len(done) >= 8


def test_pictures_exist_small_and_decode():
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README.read_text())
    assert {"docs/images/curves.png", "docs/images/confusion.png", "docs/images/heatmap.png"} <= set(names)
    for name in names:
        path = ROOT / name
        assert path.stat().st_size < 150_000, f"{name} is {path.stat().st_size:,} bytes"
        with Image.open(path) as im:
            im.load()
            assert min(im.size) >= 200


def test_cli_table_lists_every_subcommand():
    section = README.read_text().split("## The CLI at a glance", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `tlkit ([a-z-]+)", section, flags=re.M))
    parser = cli.build_parser()
    assert listed == set(parser._subparsers._group_actions[0].choices)


def test_api_listing_names_real_functions():
    section = README.read_text().split("## The API at a glance", 1)[1]
    code = next(b for lang, b, _ in fenced_blocks(section) if lang == "python")
    tree = ast.parse(code)
    import tlkit

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name), f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tlkit":
            assert hasattr(tlkit, node.attr), f"tlkit.{node.attr}"


def test_linked_files_exist():
    text = (ROOT / "recipes" / "README.md").read_text() + README.read_text()
    for target in re.findall(r"\]\(((?:recipes|docs)/[^)#]+|[a-z_]+\.py)\)", text):
        base = ROOT if "/" in target else ROOT / "recipes"
        assert (base / target).exists(), target
