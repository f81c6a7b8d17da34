"""tlkit advise's regularisation advice (tlkit/advise_recipes.py) and multi-label data in advise."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tlkit import advise_recipes as ar
from tlkit.advise import decide

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "results" / "recipes.json"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _figs(**verdicts: str) -> dict:
    base = {"mean": 0.80, "min": 0.78, "max": 0.82, "verdict": "reference"}
    cfgs = {"baseline": base}
    for name in ar.OPTIONS:
        v = verdicts.get(name, "within spread")
        lo = {"wins": 0.85, "within spread": 0.79, "loses": 0.60}[v]
        cfgs[name] = {"mean": lo + 0.02, "min": lo, "max": lo + 0.04, "verdict": v}
    return {
        "epochs": [3, 5],
        "per_class_train": 20,
        "tasks": {t: {"figure": "x", "configs": cfgs} for t in ("fine", "multi")},
    }


def _by(rows: list[dict]) -> dict[str, dict]:
    return {r["option"]: r for r in rows}


def test_only_options_that_won_are_recommended_with_their_figures():
    rows = _by(
        ar.recommend(
            multi_label=False,
            per_class_median=500,
            train_images=5000,
            figures=_figs(label_smoothing="wins", mixup="loses"),
        )
    )
    assert [k for k, r in rows.items() if r["recommend"]] == ["label_smoothing"]
    assert "0.870 (0.850..0.890) vs baseline 0.800 (0.780..0.820), +0.070" in rows["label_smoothing"]["reason"]
    assert "did not win beyond the seed spread (loses)" in rows["mixup"]["reason"]
    assert ar.extra_flags(list(rows.values())) == " --label-smoothing 0.1"


def test_mixup_and_cutmix_not_with_few_images_per_class_even_when_they_won():
    figs = _figs(mixup="wins", cutmix="wins")
    few = _by(
        ar.recommend(multi_label=False, per_class_median=ar.MIX_MIN_PER_CLASS - 1, train_images=5000, figures=figs)
    )
    many = _by(ar.recommend(multi_label=False, per_class_median=ar.MIX_MIN_PER_CLASS, train_images=5000, figures=figs))
    assert not few["mixup"]["recommend"] and not few["cutmix"]["recommend"]
    assert f"median {ar.MIX_MIN_PER_CLASS - 1} images per class < {ar.MIX_MIN_PER_CLASS}" in few["mixup"]["reason"]
    assert many["mixup"]["recommend"] and many["cutmix"]["recommend"]


def test_ema_not_with_few_steps():
    figs = _figs(ema="wins")
    # tlkit's EMA warms up: decay (1 + t) / (10 + t) reaches 0.99 after 890 updates
    assert ar.ema_steps_to_reach(0.99) == 890 and (1 + 890) / (10 + 890) >= 0.99 > (1 + 889) / (10 + 889)
    assert ar.stage_steps(2817, 32, 10) == 890 and ar.stage_steps(2816, 32, 10) == 880
    ok = _by(ar.recommend(multi_label=False, per_class_median=500, train_images=2817, run_epochs=10, figures=figs))
    few = _by(ar.recommend(multi_label=False, per_class_median=500, train_images=2816, run_epochs=10, figures=figs))
    assert ok["ema"]["recommend"] and not few["ema"]["recommend"]
    assert "this run has 880 steps, under the 890" in few["ema"]["reason"]
    assert "averaging about the last 99 steps" in few["ema"]["reason"]


def test_unmeasured_recommends_nothing_and_says_so():
    rows = ar.recommend(multi_label=True, per_class_median=5000, train_images=10**6, figures={})
    assert not any(r["recommend"] for r in rows)
    assert all("not measured yet: run benchmarks/bench_recipes.py" in r["reason"] for r in rows)


def test_big_data_hears_the_evidence_does_not_cover_it():
    rows = _by(ar.recommend(multi_label=False, per_class_median=200, train_images=10**5, figures=_figs()))
    assert "your data has 200: outside this evidence" in rows["label_smoothing"]["reason"]
    rows = _by(ar.recommend(multi_label=False, per_class_median=199, train_images=10**5, figures=_figs()))
    assert "outside this evidence" not in rows["label_smoothing"]["reason"]


def test_figures_quote_the_recorded_benchmark():
    if not RECORDED.exists():
        pytest.skip("recorded by the benchmark run (benchmarks/bench_recipes.py)")
    import bench_recipes

    result = json.loads(RECORDED.read_text())
    assert not result["quick"]
    assert ar.FIGURES == bench_recipes.advise_figures(result)


def _multi_measurements(**over) -> dict:
    m = {
        "data": "tags.csv",
        "base": "efficientnet_lite0",
        "multi_label": True,
        "positives": {"cat": 40, "cup": 12, "rocket": 30},
        "labels_per_image": 1.6,
        "images": 55,
        "classes": 3,
        "per_class": {"median": 30.0, "min": 12, "max": 40},
        "sample": {"images": 55, "seed": 0, "unreadable": []},
        "image_size": {"median_height": 96.0, "median_width": 96.0, "min_side": 96, "max_side": 96},
        "base_input": [224, 224],
        "probe": {
            "features": 0.9,
            "pixels": 0.7,
            "gain": 0.2,
            "layer": "avg_pool",
            "features_dim": 1280,
            "pixels_dim": 768,
        },
        "mirror": {"pixels": 0.7, "pixels_on_mirrored": 0.68, "chance": 0.6, "retained": None},
        "imagenet": {"mean_top1_prob": 0.3, "frequent_classes": [{"name": "tabby", "fraction": 0.5}]},
    }
    m.update(over)
    return m


def test_multi_label_small_similar_finetunes_the_head_with_thresholds():
    a = decide(_multi_measurements())
    assert a.situation == "small-similar"
    assert a.commands == ["tlkit finetune --base efficientnet_lite0 --data tags.csv --input-size 96 96 --unfreeze 0"]
    assert a.reasons[0].startswith("multi-label data: 55 images, 3 labels, 1.60 labels per image")
    assert "rarest: cup 12, rocket 30, cat 40" in a.reasons[0] and "small data" in a.reasons[0]
    assert any("one threshold per label" in r for r in a.reasons)
    assert {r["option"] for r in a.regularisation} == set(ar.OPTIONS)
    ema = _by(a.regularisation)["ema"]["reason"]
    assert "this run has 10 steps" in ema  # 44 training images (val 0.2), batch 32, 5 head epochs (no stage 2)
    assert "regularisation (measured by benchmarks/bench_recipes.py):" in a.to_text()


def test_advise_measures_a_multi_label_csv(tmp_path):
    import recipe_tasks

    from tlkit.cli import main as cli

    csv = recipe_tasks.write_multi_label(tmp_path / "multi", objects=4, train=30, val=6, test=6)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["advise", "--data", str(csv), "--sample", "42", "--json", "--cache-dir", str(tmp_path)]) == 0
    m = json.loads(buf.getvalue())["measurements"]
    rows = recipe_tasks.read_manifest(csv)
    counts = {k: sum(k in r["labels"].split("|") for r in rows) for k in list(recipe_tasks.OBJECTS)[:4]}
    assert m["multi_label"] is True and m["classes"] == 4 and m["images"] == 42
    assert m["positives"] == counts  # positives per label, counted from the manifest
    assert m["per_class"]["min"] == min(counts.values()) and m["sample"]["images"] == 42
    assert 0.5 <= m["probe"]["features"] <= 1 and 0 < m["mirror"]["chance"] < 1


def test_advise_counts_the_ema_warm_up_finetune_uses():
    """advise_recipes keeps its own copy (it must not import Keras); it must equal the trainer's."""
    from tlkit import advise_recipes
    from tlkit.finetune import ema

    assert advise_recipes.EMA_WARMUP == ema.WARMUP
