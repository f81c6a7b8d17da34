"""bench_recipes' two tasks (benchmarks/recipe_tasks.py) and its pure parts: deterministic, counted, disjoint splits."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_recipes  # noqa: E402
import recipe_tasks  # noqa: E402

SMALL_FINE = {"classes": 4, "train": 3, "val": 2, "test": 2}
SMALL_MULTI = {"objects": 5, "train": 12, "val": 4, "test": 6}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_fine_grained_is_deterministic_counted_and_split(tmp_path):
    a = recipe_tasks.write_fine_grained(tmp_path / "a", seed=3, **SMALL_FINE)
    b = recipe_tasks.write_fine_grained(tmp_path / "b", seed=3, **SMALL_FINE)
    c = recipe_tasks.write_fine_grained(tmp_path / "c", seed=4, **SMALL_FINE)
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)
    rows = recipe_tasks.read_manifest(a)
    assert list(rows[0]) == ["path", "label", "split"]
    counts = Counter((r["label"], r["split"]) for r in rows)
    names = list(recipe_tasks.FINE_CLASSES)[:4]
    assert counts == {(n, s): k for n in names for s, k in (("train", 3), ("val", 2), ("test", 2))}
    paths = {s: {r["path"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert sum(map(len, paths.values())) == len(rows) == 28  # every file in exactly one split
    digests = {s: {hashlib.sha256((a.parent / p).read_bytes()).digest() for p in ps} for s, ps in paths.items()}
    assert not (digests["train"] & digests["test"]) and not (digests["train"] & digests["val"])
    from PIL import Image

    with Image.open(a.parent / rows[0]["path"]) as im:
        assert im.size == (recipe_tasks.SIDE, recipe_tasks.SIDE) and im.mode == "RGB"


def test_multi_label_is_deterministic_with_one_to_three_objects(tmp_path):
    a = recipe_tasks.write_multi_label(tmp_path / "a", seed=0, **SMALL_MULTI)
    b = recipe_tasks.write_multi_label(tmp_path / "b", seed=0, **SMALL_MULTI)
    assert _digest(a.parent) == _digest(b.parent)
    rows = recipe_tasks.read_manifest(a)
    assert list(rows[0]) == ["path", "labels", "split"]
    assert Counter(r["split"] for r in rows) == {"train": 12, "val": 4, "test": 6}
    allowed = set(list(recipe_tasks.OBJECTS)[:5])
    for r in rows:
        labels = r["labels"].split(recipe_tasks.LABEL_SEP)
        assert 1 <= len(labels) <= recipe_tasks.MAX_OBJECTS and labels == sorted(set(labels))
        assert set(labels) <= allowed
    assert len({r["path"] for r in rows}) == len(rows)
    assert len({lab for r in rows for lab in r["labels"].split("|")}) >= 4  # most objects appear


def test_composite_labels_are_the_pasted_objects():
    import numpy as np

    rng = np.random.default_rng(0)
    white = {"a": np.full((40, 40, 3), 255, np.uint8), "b": np.full((40, 40, 3), 255, np.uint8)}
    im, labels = recipe_tasks.composite(rng, white, [np.zeros((120, 120, 3), np.uint8)], side=64)
    # every pasted patch is white on black: bright pixels exist exactly because something was pasted
    assert labels and set(labels) <= {"a", "b"} and (im.mean(axis=2) > 200).sum() >= (64 * 0.3) ** 2 * 0.8


def test_verdict_needs_the_seed_ranges_apart():
    base = bench_recipes.summary([0.80, 0.82, 0.84])
    assert bench_recipes.verdict(bench_recipes.summary([0.85, 0.86, 0.90]), base) == "wins"
    assert bench_recipes.verdict(bench_recipes.summary([0.84, 0.90, 0.95]), base) == "within spread"  # 0.84 ties
    assert bench_recipes.verdict(bench_recipes.summary([0.70, 0.75, 0.79]), base) == "loses"
    assert bench_recipes.verdict({"n": 0}, base) == "n/a"
    assert base["mean"] == 0.82 and base["min"] == 0.8 and base["max"] == 0.84 and base["std"] == 0.02


def test_configs_name_flags_and_missing_ones_are_found():
    assert bench_recipes.CONFIGS["baseline"] == []
    timm = bench_recipes.CONFIGS["timm"]
    for cfg in ("label_smoothing", "mixup", "cutmix", "randaugment", "ema"):
        assert bench_recipes.CONFIGS[cfg][0] in timm  # the combination has every option
    assert bench_recipes.missing_flags(timm, {"--label-smoothing", "--ema"}) == ["--mixup", "--cutmix", "--randaugment"]
    assert bench_recipes.test_figures({"top1": 0.5, "macro_ap": 0.7}) == {
        "top1": 0.5,
        "macro_ap": 0.7,
        "micro_f1": None,
    }
    assert bench_recipes.test_figures(None) == {"top1": None, "macro_ap": None, "micro_f1": None}
    nested = {"count": 9, "per_class": {"cat": {"micro_f1": 0.1}}, "multi_label": {"macro_ap": 0.6, "micro_f1": 0.5}}
    assert bench_recipes.test_figures(nested) == {"top1": None, "macro_ap": 0.6, "micro_f1": 0.5}
