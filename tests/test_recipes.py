"""Every recipe in recipes/ runs at its --smoke size and checks its own result (exit 0, "ok")."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _run(name: str, workdir: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(RECIPES / name), "--smoke", "--workdir", str(workdir), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _decodes(path: Path) -> None:
    with Image.open(path) as im:
        im.load()


def _classify(w: Path) -> None:
    assert (w / "photos" / "chelsea.jpg").is_file()


def _features(w: Path) -> None:
    assert (w / "features.parquet").is_file()
    assert json.loads((w / "probe" / "metrics.json").read_text())["top1"] >= 0.9
    _decodes(w / "probe" / "confusion.png")


def _top_blocks(w: Path) -> None:
    run = w / "runs" / "top_blocks"
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0.85
    assert [r.split(",")[1] for r in (run / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]
    _decodes(run / "curves.png")


def _deep(w: Path) -> None:
    run = w / "runs" / "deep"
    assert json.loads((run / "config.json").read_text())["unfreeze"] == "all"
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0.3


def _dense(w: Path) -> None:
    maps = sorted(w.glob("heatmap_*.png"))
    assert len(maps) == 2
    for m in maps:
        _decodes(m)


def _ensemble(w: Path) -> None:
    results = json.loads((w / "evaluation" / "evaluation.json").read_text())
    assert len(results["ensemble"]["members"]) == 2 and results["ensemble"]["top1"] >= 0.3


def _export(w: Path) -> None:
    version = w / "saved_models" / "efficientnet_lite0" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets" / "labels.txt").is_file()
    assert json.loads((w / "request.json").read_text())["instances"][0]["image_bytes"]["b64"]


CASES = {
    "classify_photos.py": _classify,
    "features_linear.py": _features,
    "finetune_top_blocks.py": _top_blocks,
    "finetune_deep.py": _deep,
    "dense_heatmap.py": _dense,
    "ensemble.py": _ensemble,
    "export_and_query.py": _export,
}


def test_every_recipe_is_tested():
    assert sorted(p.name for p in RECIPES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_smoke(name, tmp_path):
    workdir, cwd = tmp_path / "work", tmp_path / "cwd"
    proc = _run(name, workdir, cwd)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.rstrip().splitlines()[-1].startswith("ok"), proc.stdout[-2000:]
    CASES[name](workdir)
    assert list(cwd.iterdir()) == [], "recipes write only under --workdir"


def test_a_recipe_that_misses_its_bound_fails(tmp_path):
    proc = _run("features_linear.py", tmp_path / "work", tmp_path / "cwd", "--min_accuracy", "1.01")
    assert proc.returncode == 1
    assert "FAILED: held-out accuracy" in proc.stderr
