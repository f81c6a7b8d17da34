"""Regularisation recipes measured: baseline, each option alone, and timm's combination, 3 seeds, held-out test.

Run: ``python benchmarks/bench_recipes.py`` (the full table, about 12-15 minutes on 2 cores);
``--quick`` for a smoke test (smaller tasks, 1 seed, 1+1 epochs; figures mean nothing and go to
``results/recipes.quick.json`` unless ``--out``). ``--print-figures`` prints the
``tlkit/advise_recipes.py`` ``FIGURES`` literal from a recorded JSON.

Tasks (``benchmarks/recipe_tasks.py``, made from scikit-image's bundled photos, no download):

* ``fine``: single-label, 10 classes of look-alike texture crops (four grey textures, two windows of
  an immunohistochemistry slide, two of a retina, the Hubble deep field, cat fur), 20 training,
  6 validation and 20 test images per class. Figure: test top-1.
* ``multi``: multi-label composites, 1-3 of 8 object patches on a texture background; 160 training,
  48 validation, 120 test images. Figures: test macro AP (the verdict's figure) and micro F1.

Each run is the installed ``tlkit finetune`` in a subprocess with the configuration's flags
appended to :data:`COMMON` (EfficientNet-Lite0, ImageNet weights, 96x96 input, ``--cache mem``);
then one ``tlkit evaluate RUN... --split test --json`` per task reads every run's test split.
A configuration naming a flag that ``tlkit finetune --help`` lacks is reported ``n/a`` and not run.
Seeds are tlkit's ``--seed`` (initialisation, augmentation, shuffling); the task files are fixed.
Runs are interleaved (seed outer, configuration inner) so a drift in the machine's speed spreads
over every configuration.

Verdict per option against the baseline, on the task's figure: **wins** when its worst seed beats
the baseline's best seed, **loses** when its best seed is below the baseline's worst, else **within
spread** (with 3 seeds, the ranges not overlapping is the least a claim needs; no distribution is
assumed). Why these values (a few hundred optimizer steps, not timm's 300 ImageNet epochs):

* label smoothing 0.1: the value of Szegedy et al. and timm's default;
* mixup 0.2: light mixing, torchvision's/fastai's value for short schedules (0.8 is timm's for long ones);
* cutmix 1.0: the CutMix paper's and timm's only value;
* RandAugment 2,9: N=2 ops at magnitude 9 of 30, torchvision's ``RandAugment(num_ops=2, magnitude=9)``
  (timm's ``rand-m9-n2`` is 9 of 10, ``2,27`` here: too strong for 96x96 crops of 32-64 px);
* EMA 0.99 (Keras' default ``ema_momentum``): tlkit's EMA warms up (decay ``min(DECAY, (1+t)/(10+t))``
  after ``t`` updates), so in these ~100-step runs the warm-up sets the decay (0.92 at the end) and any
  DECAY above that behaves the same; timm's 0.9998 is for hundreds of thousands of steps;
* timm: label smoothing 0.1 + mixup 0.8 + cutmix 1.0 (timm's values) + RandAugment 2,9 + EMA 0.99, all together.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe_tasks  # noqa: E402
from _bench_util import machine, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
EMA_DECAY = "0.99"
CONFIGS: dict[str, list[str]] = {
    "baseline": [],
    "label_smoothing": "--label-smoothing 0.1".split(),
    "mixup": "--mixup 0.2".split(),
    "cutmix": "--cutmix 1.0".split(),
    "randaugment": "--randaugment 2,9".split(),
    "ema": ["--ema", EMA_DECAY],
    "timm": "--label-smoothing 0.1 --mixup 0.8 --cutmix 1.0 --randaugment 2,9".split() + ["--ema", EMA_DECAY],
}
COMMON = "--base efficientnet_lite0 --input-size 96 96 --batch-size 16 --lr 3e-3 --cache mem".split()
FULL = {"epochs": 3, "finetune_epochs": 5, "seeds": SEEDS, "fine": {}, "multi": {}}
QUICK = {
    "epochs": 1,
    "finetune_epochs": 1,
    "seeds": (0,),
    "fine": {"classes": 4, "train": 8, "val": 4, "test": 8},
    "multi": {"objects": 4, "train": 32, "val": 16, "test": 24},
}
# task -> (figure the verdict is on, other figures reported)
FIGURES = {"fine": ("top1", ()), "multi": ("macro_ap", ("micro_f1",))}


def tlkit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("tlkit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tlkit"]


def known_flags() -> set[str]:
    out = subprocess.run([*tlkit_cmd(), "finetune", "--help"], capture_output=True, text=True, timeout=300).stdout
    return {w.strip("[],") for w in out.split() if w.startswith(("--", "[--"))}


def missing_flags(flags: list[str], known: set[str]) -> list[str]:
    """The ``--flags`` of a configuration that ``tlkit finetune --help`` does not list."""
    return [f for f in flags if f.startswith("--") and f not in known]


def _find(m: Any, key: str) -> float | None:
    """``m[key]`` if a number, else the first such value in a nested dict (breadth first), else None."""
    level = [m]
    while level:
        for d in level:
            if isinstance(d.get(key), (int, float)) and not isinstance(d.get(key), bool):
                return float(d[key])
        level = [v for d in level for k, v in d.items() if isinstance(v, dict) and k != "per_class"]
    return None


def test_figures(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """The figures bench_recipes reports from one run's test metrics (``None`` where absent): ``top1``
    (single-label), ``macro_ap`` and ``micro_f1`` (multi-label; found at the top or in a nested dict)."""
    return {k: _find(metrics or {}, k) for k in ("top1", "macro_ap", "micro_f1")}


def summary(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0}
    return {
        "n": len(vals),
        "mean": round(statistics.fmean(vals), 4),
        "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
        "min": round(min(vals), 4),
        "max": round(max(vals), 4),
        "values": [round(v, 4) for v in vals],
    }


def verdict(option: dict[str, Any], baseline: dict[str, Any]) -> str:
    """wins / loses / within spread (see the module docstring), or n/a without figures on both sides."""
    if not option.get("n") or not baseline.get("n"):
        return "n/a"
    if option["min"] > baseline["max"]:
        return "wins"
    if option["max"] < baseline["min"]:
        return "loses"
    return "within spread"


def write_tasks(work: Path, sizes: dict[str, Any]) -> dict[str, Path]:
    tasks = work / "tasks"
    shutil.rmtree(tasks, ignore_errors=True)
    return {
        "fine": recipe_tasks.write_fine_grained(tasks / "fine", **sizes["fine"]),
        "multi": recipe_tasks.write_multi_label(tasks / "multi", **sizes["multi"]),
    }


def finetune(manifest: Path, runs: Path, name: str, seed: int, flags: list[str], sizes: dict[str, Any]) -> dict:
    cmd = [
        *tlkit_cmd(), "finetune", "--data", str(manifest), *COMMON, "--epochs", str(sizes["epochs"]),
        "--finetune-epochs", str(sizes["finetune_epochs"]), "--seed", str(seed), "--runs-dir", str(runs),
        "--name", name, "--force", "--quiet", *flags,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    print(f"{name:28s} {time.perf_counter() - t0:6.1f} s, exit {proc.returncode}", flush=True)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "rc": proc.returncode,
        "error": None if proc.returncode == 0 else (proc.stderr.strip() or proc.stdout.strip())[-600:],
    }


def evaluate_test(run_dirs: list[Path]) -> tuple[dict[str, Any], str | None]:
    """``{run dir: test metrics}`` from one ``tlkit evaluate --split test --json``; on failure, one run at a time."""
    if not run_dirs:
        return {}, None
    proc = subprocess.run(
        [*tlkit_cmd(), "evaluate", *map(str, run_dirs), "--split", "test", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode == 0:
        return json.loads(proc.stdout), None
    return {}, (proc.stderr.strip() or proc.stdout.strip())[-600:]


def measure(args: argparse.Namespace, sizes: dict[str, Any], work: Path) -> dict[str, Any]:
    known = known_flags()
    manifests = write_tasks(work, sizes)
    runs = work / "runs"
    result: dict[str, Any] = {"tasks": {}}
    for task in args.tasks:
        key, others = FIGURES[task]
        rows: dict[str, dict[str, Any]] = {}
        for cfg, flags in CONFIGS.items():
            if cfg not in args.configs:
                continue
            missing = missing_flags(flags, known)
            rows[cfg] = {"flags": flags, "runs": [], "status": f"n/a: tlkit finetune has no {', '.join(missing)}"}
            if not missing:
                rows[cfg]["status"] = "ran"
        todo = [(seed, cfg) for seed in sizes["seeds"] for cfg, row in rows.items() if row["status"] == "ran"]
        jobs = [(manifests[task], runs, f"{task}-{cfg}-s{seed}", seed, rows[cfg]["flags"], sizes) for seed, cfg in todo]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for (seed, cfg), job, r in zip(todo, jobs, pool.map(lambda j: finetune(*j), jobs)):
                rows[cfg]["runs"].append({"seed": seed, "run": job[2], **r})
        done = [runs / r["run"] for row in rows.values() for r in row["runs"] if r["rc"] == 0]
        t0 = time.perf_counter()
        tested, err = evaluate_test(done)
        eval_seconds = round(time.perf_counter() - t0, 1)
        by_name = {Path(k).name: v for k, v in tested.items()}
        for row in rows.values():
            for r in row["runs"]:
                r.update(test_figures(by_name.get(r["run"])))
            for fig in (key, *others):
                row[fig] = summary([r[fig] for r in row["runs"] if r.get(fig) is not None])
            row["seconds"] = summary([r["seconds"] for r in row["runs"]])
        base = rows.get("baseline", {}).get(key, {"n": 0})
        for cfg, row in rows.items():
            if cfg != "baseline":
                row["verdict"] = verdict(row[key], base)
                if row[key].get("n") and base.get("n"):
                    row["mean_minus_baseline"] = round(row[key]["mean"] - base["mean"], 4)
        result["tasks"][task] = {
            "manifest": str(manifests[task].relative_to(work)),
            "figure": key,
            "also": list(others),
            "rows": rows,
            "evaluate_seconds": eval_seconds,
            "evaluate_error": err,
        }
    return result


def print_table(result: dict[str, Any]) -> None:
    for task, t in result["tasks"].items():
        key = t["figure"]
        print(f"\n{task}: test {key} (mean ± std over seeds, min..max)" + "".join(f", {o}" for o in t["also"]))
        print(
            f"{'config':16s} {key:>28s} {'vs baseline':>12s} {'verdict':>14s}" + "".join(f"{o:>16s}" for o in t["also"])
        )
        for cfg, row in t["rows"].items():
            s = row.get(key, {})
            if row["status"] != "ran" or not s.get("n"):
                err = next((r["error"] for r in row.get("runs", []) if r.get("error")), None) or t.get("evaluate_error")
                print(f"{cfg:16s} {row['status'] if row['status'] != 'ran' else 'no figure: ' + str(err)[-80:]}")
                continue
            cell = f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f}..{s['max']:.3f})"
            diff = f"{row['mean_minus_baseline']:+.3f}" if "mean_minus_baseline" in row else ""
            also = "".join(
                f"{row[o]['mean']:>10.3f} ± {row[o]['std']:.2f}" if row.get(o, {}).get("n") else f"{'-':>16s}"
                for o in t["also"]
            )
            print(f"{cfg:16s} {cell:>28s} {diff:>12s} {row.get('verdict', ''):>14s}{also}")


def advise_figures(result: dict[str, Any]) -> dict[str, Any]:
    """What tlkit/advise_recipes.py quotes: per task and option, the figure's mean, min, max and the verdict."""
    out: dict[str, Any] = {"epochs": result["epochs"], "per_class_train": result["per_class_train"], "tasks": {}}
    for task, t in result["tasks"].items():
        out["tasks"][task] = {"figure": t["figure"], "configs": {}}
        for cfg, row in t["rows"].items():
            s = row.get(t["figure"], {})
            if s.get("n"):
                out["tasks"][task]["configs"][cfg] = {
                    "mean": s["mean"],
                    "min": s["min"],
                    "max": s["max"],
                    "verdict": row.get("verdict", "reference"),
                }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small tasks, 1 seed, 1+1 epochs")
    ap.add_argument("--tasks", nargs="+", default=list(FIGURES), choices=list(FIGURES))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="finetune runs at once (default 2: on 2 cores, one run's start-up and tracing leave a core idle; "
        "results do not depend on it, each run is deterministic)",
    )
    ap.add_argument("--work", help="folder for the tasks and runs (default: a temporary folder, deleted)")
    ap.add_argument("--out", help="JSON to write (default: results/recipes.json; --quick: results/recipes.quick.json)")
    ap.add_argument("--print-figures", metavar="JSON", help="print advise_recipes.FIGURES from a recorded JSON")
    args = ap.parse_args(argv)
    if args.print_figures:
        print(json.dumps(advise_figures(json.loads(Path(args.print_figures).read_text())), indent=4))
        return 0
    sizes = QUICK if args.quick else FULL
    out = Path(args.out) if args.out else RESULTS / ("recipes.quick.json" if args.quick else "recipes.json")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tlkit-recipes-"))
    t0 = time.perf_counter()
    try:
        result = measure(args, sizes, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    fine = {**recipe_tasks.write_fine_grained.__kwdefaults__, **sizes["fine"]}
    result = {
        "quick": bool(args.quick),
        "machine": machine(),
        "common_flags": COMMON,
        "epochs": [sizes["epochs"], sizes["finetune_epochs"]],
        "seeds": list(sizes["seeds"]),
        "per_class_train": fine["train"],
        "verdict_rule": "wins: worst seed above the baseline's best seed; loses: best seed below the baseline's worst",
        **result,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print_table(result)
    print(f"\ntotal {result['total_seconds']:.0f} s; wrote {out}")
    write_json(out, result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
