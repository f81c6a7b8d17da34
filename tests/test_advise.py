"""tlkit advise: measured situations for the builtins, thresholds, and the printed command runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlkit.advise import FLIP_RETAINED, SMALL_PER_CLASS, decide, input_side
from tlkit.advise_recipes import extra_flags
from tlkit.cli import main as cli

SMOKE = " --epochs 1 --finetune-epochs 1"  # appended to each `tlkit finetune` step: argparse keeps the last value


@pytest.fixture(scope="module")
def advice():
    out = {}
    for name in ("digits", "faces"):
        import io
        from contextlib import redirect_stdout

        buf = io.StringIO()
        with redirect_stdout(buf):
            assert cli.main(["advise", "--data", f"builtin:{name}", "--json"]) == 0
        out[name] = json.loads(buf.getvalue())
    return out


def _measurements(**over):
    m = {
        "data": "photos/",
        "base": "efficientnet_lite0",
        "images": 5000,
        "classes": 2,
        "per_class": {"median": 2500.0, "min": 2400, "max": 2600},
        "sample": {"images": 200, "seed": 0, "unreadable": []},
        "image_size": {"median_height": 480.0, "median_width": 640.0, "min_side": 300, "max_side": 1024},
        "base_input": [224, 224],
        "probe": {
            "features": 0.95,
            "pixels": 0.7,
            "gain": 0.25,
            "layer": "avg_pool",
            "features_dim": 1280,
            "pixels_dim": 768,
        },
        "mirror": {"pixels": 0.7, "pixels_on_mirrored": 0.65, "chance": 0.5, "retained": 0.75},
        "imagenet": {"mean_top1_prob": 0.6, "frequent_classes": [{"name": "tabby", "fraction": 0.5}]},
    }
    for k, v in over.items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    return m


@pytest.mark.slow
def test_digits_and_faces_land_in_different_situations(advice):
    d, f = advice["digits"], advice["faces"]
    assert d["situation"] == "small-different" and f["situation"] == "small-similar"
    # The deciding measurement: pretrained features against raw pixels, same probe.
    assert d["measurements"]["probe"]["gain"] < 0 <= f["measurements"]["probe"]["gain"]
    assert d["measurements"]["images"] == 1797 and d["measurements"]["classes"] == 10
    assert f["measurements"]["images"] == 200 and f["measurements"]["per_class"]["median"] == 100
    # Reasons state the numbers they rest on.
    pr = d["measurements"]["probe"]
    assert any(
        f"{pr['features']:.3f}" in r and f"{pr['pixels']:.3f}" in r and "worse than pixels" in r for r in d["reasons"]
    )
    assert any("better than pixels" in r for r in f["reasons"])
    assert any("median 180.5 per class" in r and "1,000" in r for r in d["reasons"])
    assert d["recipe"] == "recipes/finetune_deep.py" and f["recipe"] == "recipes/features_linear.py"
    for a in (d, f):
        assert Path(a["recipe"]).name in {p.name for p in (Path(__file__).parents[1] / "recipes").glob("*.py")}


def test_digits_command_is_the_main_job(advice):
    # Measured, not hard-coded: 8x8 images -> 64x64 input and no augmentation; a pixel probe keeps
    # under half its skill on mirrored digits -> --no-flip. That is exactly the README's main job.
    assert advice["digits"]["measurements"]["mirror"]["retained"] < FLIP_RETAINED
    assert advice["digits"]["command"] == (
        "tlkit finetune --base efficientnet_lite0 --data builtin:digits --input-size 64 64 --epochs 4 "
        "--finetune-epochs 4 --unfreeze all --lr 3e-3 --no-augment --no-flip"
        + extra_flags(
            advice["digits"]["regularisation"]
        )  # what bench_recipes' evidence adds (tests/test_advise_recipes.py)
    )
    assert advice["faces"]["commands"][0].startswith("tlkit extract --base efficientnet_lite0 --layer penultimate")
    assert advice["faces"]["commands"][1].startswith("tlkit probe ")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "faces"])
def test_printed_command_runs(advice, name, tmp_path):
    steps = [c + SMOKE if c.startswith("tlkit finetune ") else c for c in advice[name]["commands"]]
    assert " && ".join(advice[name]["commands"]) == advice[name]["command"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", " && ".join(steps)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if name == "faces":
        assert "held-out accuracy" in proc.stdout
        assert json.loads(next(tmp_path.glob("probes/*/metrics.json")).read_text())["top1"] >= 0.9
    else:
        assert (tmp_path / "runs" / "efficientnet_lite0-builtin-digits" / "metrics.json").is_file()


def test_size_threshold_is_images_per_class():
    small = decide(_measurements(per_class={"median": SMALL_PER_CLASS - 1}))
    large = decide(_measurements(per_class={"median": SMALL_PER_CLASS}))
    assert (small.size, large.size) == ("small", "large")
    assert small.situation == "small-similar" and large.situation == "large-similar"
    assert "--unfreeze 2" in large.command and large.recipe == "recipes/finetune_top_blocks.py"
    assert "--input-size 224 224" in large.command  # photos larger than the base's input keep its size
    assert "--no-flip" not in large.command and "--no-augment" not in large.command


def test_similarity_threshold_is_features_versus_pixels():
    same = decide(_measurements(probe={"gain": 0.0}))
    worse = decide(_measurements(probe={"gain": -0.01}))
    assert same.similarity == "similar" and worse.similarity == "different"
    assert decide(_measurements(probe={"gain": -0.2})).situation == "large-different"
    # Confidence is reported, never decisive.
    assert decide(_measurements(imagenet={"mean_top1_prob": 0.01})).similarity == "similar"


def test_flip_and_augment_follow_the_measurements():
    a = decide(
        _measurements(
            probe={"gain": -0.1},
            mirror={"retained": FLIP_RETAINED - 0.01},
            image_size={"median_height": 20.0, "median_width": 30.0},
        )
    )
    assert a.command.endswith("--no-augment --no-flip") and "--input-size 64 64" in a.command
    b = decide(_measurements(probe={"gain": -0.1}, mirror={"retained": FLIP_RETAINED}))
    assert "--no-flip" not in b.command
    c = decide(_measurements(probe={"gain": -0.1}, mirror={"retained": None}))  # probe near chance: flips stay
    assert "--no-flip" not in c.command and any("too close to chance" in r for r in c.reasons)


def test_input_side():
    assert [input_side(s, 224) for s in (8, 25, 64, 65, 150, 500)] == [64, 64, 64, 96, 160, 224]


def test_text_output_has_situation_reasons_recipe_and_command():
    text = decide(_measurements(data="my photos/")).to_text()
    for part in (
        "situation: large data, similar to ImageNet",
        "why:",
        "recipe: recipes/finetune_top_blocks.py",
        "command:",
        "--data 'my photos/'",
    ):
        assert part in text


def test_base_without_imagenet_classifier_is_refused(capsys):
    assert cli.main(["advise", "--data", "builtin:faces", "--base", "lenet5"]) == 2
    assert "ImageNet classifier" in capsys.readouterr().err
