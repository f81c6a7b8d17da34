"""Segmentation heads and initialisation measured: FCN-32s/16s/8s and U-Net on EfficientNet-Lite0, ImageNet vs
random weights, 3 seeds, scored on a held-out test split.

Run: ``python benchmarks/bench_segment.py`` (8 configurations x 3 seeds); ``--quick`` for a smoke test
(tiny data at 64 px, 1 seed, 1+1 epochs, random weights 0+2: figures mean nothing, written to
``results/segment.quick.json`` unless ``--out``; 8 runs, about 17 minutes on a busy 2-core machine, mostly
TensorFlow start-up and tracing).
``--heads``/``--weights``/``--seeds`` narrow or widen the grid (``--quick --heads fcn8s --weights none``: one run).

Everything goes through the installed ``tlkit`` command, as a user runs it (the CLI spelled in one place below,
:data:`CLI` and the flag lists): ``tlkit segment sample-data`` writes the generated data once (objects cut from
scikit-image's photos pasted on others; train/val/test, fixed seed 0), then per configuration and seed ``tlkit
segment finetune --base efficientnet_lite0 --head H --weights W --seed S`` (ImageNet: 4 epochs of the decoder on the
frozen base, then 8 of the whole network at lr / 10; random weights: 12 epochs of the whole network at the full lr,
see :data:`WEIGHTS_FLAGS`; best checkpoint by val mean IoU) and ``tlkit segment evaluate RUN --split test --json``.
Figures per run, on the test split: mean IoU, pixel accuracy, and the mean IoU and pixel accuracy in the 3 px band
along the truth's class boundaries (``tlkit.segment.metrics.boundary_band``). The seed is tlkit's ``--seed``
(initialisation, augmentation, shuffling); the data are the same for every run. Runs are interleaved (seed outer,
configuration inner) so a drift in the machine's speed spreads over every configuration. A flag that ``tlkit segment
finetune --help`` lacks makes the configuration ``n/a`` (not run).

Verdicts, bench_recipes' rule (its ``verdict``): **wins** when the worst seed beats the reference's best
seed, **loses** when the best seed is below the reference's worst, else **within spread** (the ranges
over seeds overlap; no distribution is assumed). Compared: each head against FCN-32s with the same
weights, on boundary mean IoU and on mean IoU; ImageNet against random weights per head, on mean IoU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import machine, write_json  # noqa: E402
from bench_recipes import summary, tlkit_cmd, verdict  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# The command line, spelled as the segmentation contract (tlkit segment ...): change it here only.
CLI = {
    "sample_data": ["segment", "sample-data"],
    "finetune": ["segment", "finetune"],
    "evaluate": ["segment", "evaluate"],
}
BASE = "efficientnet_lite0"
HEADS = ("fcn32s", "fcn16s", "fcn8s", "unet")
WEIGHTS = ("imagenet", "none")
SEEDS = (0, 1, 2)
DATA_SEED = 0
COMMON = ["--base", BASE, "--batch-size", "8", "--lr", "3e-3", "--unfreeze", "all"]
# Flags added per initialisation; both train the whole network for the same number of epochs. ImageNet weights:
# stage 1 the decoder on the frozen base, stage 2 everything at lr / 10 (tlkit's staged finetuning). Random weights:
# no stage 1 (a frozen random base is no feature extractor) and the whole network at the full lr from the first
# epoch. BatchNorm stays in inference mode in both (tlkit's default): trained on batch statistics, a random base's
# moving averages (momentum 0.99) lag far behind after ~180 steps and validation collapses to all-background.
WEIGHTS_FLAGS = {"imagenet": [], "none": ["--finetune-lr", "3e-3"]}
# Epochs per stage (stage 1, stage 2) for each initialisation: the same total.
FULL = {"data": {"train": 120, "val": 30, "test": 30, "size": 128}, "input": 128,
        "epochs": {"imagenet": (4, 8), "none": (0, 12)}}  # fmt: skip
QUICK = {"data": {"train": 16, "val": 8, "test": 8, "size": 64}, "input": 64,
         "epochs": {"imagenet": (1, 1), "none": (0, 2)}}  # fmt: skip
FIGURES = ("mean_iou", "pixel_accuracy", "boundary_iou", "boundary_accuracy")
REFERENCE_HEAD = "fcn32s"
TIMEOUT = 3600


def sample_data_argv(out: Path, sizes: dict[str, Any]) -> list[str]:
    d = sizes["data"]
    return [
        *CLI["sample_data"], str(out), "--train", str(d["train"]), "--val", str(d["val"]), "--test", str(d["test"]),
        "--size", str(d["size"]), "--seed", str(DATA_SEED),
    ]  # fmt: skip


def finetune_argv(data: Path, runs: Path, name: str, head: str, weights: str, seed: int, sizes: dict) -> list[str]:
    side = str(sizes["input"])
    return [
        *CLI["finetune"], "--data", str(data), *COMMON, "--head", head, "--weights", weights, *WEIGHTS_FLAGS[weights],
        "--input-size", side, side, "--epochs", str(sizes["epochs"][weights][0]), "--finetune-epochs",
        str(sizes["epochs"][weights][1]), "--seed", str(seed), "--runs-dir", str(runs), "--name", name,
        "--force", "--quiet",
    ]  # fmt: skip


def evaluate_argv(run: Path) -> list[str]:
    return [*CLI["evaluate"], str(run), "--split", "test", "--json"]


def known_flags() -> set[str] | None:
    """The flags ``tlkit segment finetune --help`` lists; None when this tlkit has no ``segment`` command."""
    proc = subprocess.run([*tlkit_cmd(), *CLI["finetune"], "--help"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return None
    return {w.strip("[],") for w in proc.stdout.split() if w.startswith(("--", "[--"))}


def figures(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """The figures of one ``tlkit segment evaluate --json`` answer (``None`` where absent)."""
    m = metrics or {}
    band = m.get("boundary") or {}
    return {
        "mean_iou": m.get("mean_iou"),
        "pixel_accuracy": m.get("pixel_accuracy"),
        "boundary_iou": band.get("mean_iou"),
        "boundary_accuracy": band.get("pixel_accuracy"),
    }


def _run(argv: list[str], timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([*tlkit_cmd(), *argv], capture_output=True, text=True, timeout=timeout)


def _error(proc: subprocess.CompletedProcess) -> str | None:
    return None if proc.returncode == 0 else (proc.stderr.strip() or proc.stdout.strip())[-600:]


def one_run(data: Path, runs: Path, head: str, weights: str, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """Finetune one configuration and seed, then score its test split; figures, seconds and errors."""
    name = f"{head}-{weights}-s{seed}"
    t0 = time.perf_counter()
    proc = _run(finetune_argv(data, runs, name, head, weights, seed, sizes))
    row: dict[str, Any] = {"seed": seed, "run": name, "seconds": round(time.perf_counter() - t0, 1)}
    row.update(rc=proc.returncode, error=_error(proc))
    if proc.returncode == 0:
        t1 = time.perf_counter()
        ev = _run(evaluate_argv(runs / name), timeout=900)
        row["evaluate_seconds"] = round(time.perf_counter() - t1, 1)
        row["error"] = _error(ev)
        tested = json.loads(ev.stdout) if ev.returncode == 0 else None
        row.update(figures(tested))
        # The run's own metrics.json holds the same test scores (written at the end of finetune): a cross-check.
        try:
            own = json.loads((runs / name / "metrics.json").read_text()).get("test") or {}
            row["metrics_json_agrees"] = own.get("mean_iou") == row["mean_iou"] if own else None
        except (OSError, ValueError):
            row["metrics_json_agrees"] = None
    print(f"{name:24s} {row['seconds']:7.1f} s, exit {proc.returncode}, test mIoU {row.get('mean_iou')}", flush=True)
    return row


def compare(rows: dict[str, dict[str, Any]], heads: list[str], weights: list[str]) -> list[dict[str, Any]]:
    """Verdicts: each head vs FCN-32s (same weights) on boundary and overall mean IoU; imagenet vs none per head."""
    pairs = [
        (f"{h}/{w}", f"{REFERENCE_HEAD}/{w}", fig)
        for w in weights
        for h in heads
        if h != REFERENCE_HEAD and REFERENCE_HEAD in heads
        for fig in ("boundary_iou", "mean_iou")
    ]
    if "imagenet" in weights and "none" in weights:
        pairs += [(f"{h}/imagenet", f"{h}/none", "mean_iou") for h in heads]
    out = []
    for option, reference, fig in pairs:
        a, b = rows.get(option, {}).get(fig, {"n": 0}), rows.get(reference, {}).get(fig, {"n": 0})
        item = {"option": option, "reference": reference, "figure": fig, "verdict": verdict(a, b)}
        if a.get("n") and b.get("n"):
            item["mean_difference"] = round(a["mean"] - b["mean"], 4)
        out.append(item)
    return out


def measure(args: argparse.Namespace, sizes: dict[str, Any], work: Path) -> dict[str, Any]:
    known = known_flags()
    if known is None:
        raise SystemExit("this tlkit has no `tlkit segment finetune` (issue 22's CLI): install a tlkit that has it")
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.perf_counter()
    made = _run(sample_data_argv(data, sizes), timeout=900)
    if made.returncode != 0:
        raise SystemExit(f"tlkit segment sample-data failed: {_error(made)}")
    data_seconds = round(time.perf_counter() - t0, 1)
    runs = work / "runs"
    rows: dict[str, dict[str, Any]] = {}
    for h in args.heads:
        for w in args.weights:
            argv = finetune_argv(data, runs, "x", h, w, 0, sizes)
            missing = [f for f in argv if f.startswith("--") and f not in known]
            rows[f"{h}/{w}"] = {"head": h, "weights": w, "runs": [], "status": "ran"}
            if missing:
                rows[f"{h}/{w}"]["status"] = f"n/a: tlkit segment finetune has no {', '.join(missing)}"
    todo = [(seed, key) for seed in args.seeds for key, row in rows.items() if row["status"] == "ran"]
    jobs = [(data, runs, rows[key]["head"], rows[key]["weights"], seed, sizes) for seed, key in todo]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for (_, key), r in zip(todo, pool.map(lambda j: one_run(*j), jobs)):
            rows[key]["runs"].append(r)
    for row in rows.values():
        for fig in (*FIGURES, "seconds"):
            row[fig] = summary([r[fig] for r in row["runs"] if r.get(fig) is not None])
    return {"data_seconds": data_seconds, "rows": rows, "verdicts": compare(rows, args.heads, args.weights)}


def print_table(result: dict[str, Any]) -> None:
    print(f"\ntest split, mean ± std over seeds (min..max); boundary = {result['boundary_band']}")
    print(f"{'head/weights':18s} {'mean IoU':>28s} {'pixel acc':>10s} {'boundary IoU':>28s} {'seconds':>8s}")
    for key, row in result["rows"].items():
        m, b = row.get("mean_iou", {}), row.get("boundary_iou", {})
        if row["status"] != "ran" or not m.get("n"):
            err = next((r["error"] for r in row.get("runs", []) if r.get("error")), None)
            print(f"{key:18s} {row['status'] if row['status'] != 'ran' else 'no figure: ' + str(err)[-90:]}")
            continue
        cell = f"{m['mean']:.3f} ± {m['std']:.3f} ({m['min']:.3f}..{m['max']:.3f})"
        band = f"{b['mean']:.3f} ± {b['std']:.3f} ({b['min']:.3f}..{b['max']:.3f})" if b.get("n") else "-"
        acc = row["pixel_accuracy"]["mean"] if row["pixel_accuracy"].get("n") else float("nan")
        print(f"{key:18s} {cell:>28s} {acc:>10.3f} {band:>28s} {row['seconds'].get('mean', 0):>8.0f}")
    print(f"\n{'option':18s} {'reference':18s} {'figure':14s} {'difference':>10s}  verdict")
    for v in result["verdicts"]:
        diff = f"{v['mean_difference']:+.3f}" if "mean_difference" in v else ""
        print(f"{v['option']:18s} {v['reference']:18s} {v['figure']:14s} {diff:>10s}  {v['verdict']}")


SHOWN = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s", "unet": "U-Net"}


def _cell(fig: dict[str, Any]) -> str:
    return f"{fig['mean']:.3f} ({fig['min']:.3f}..{fig['max']:.3f})" if fig.get("n") else "-"


def markdown(result: dict[str, Any]) -> str:
    """The README's two tables, from a recorded result: figures per head and initialisation (mean and
    range over seeds), then each head against FCN-32s and ImageNet against random weights (verdicts)."""
    rows, verdicts = result["rows"], {(v["option"], v["reference"], v["figure"]): v for v in result["verdicts"]}

    def said(option: str, reference: str, fig: str) -> str:
        v = verdicts.get((option, reference, fig))
        if v is None or "mean_difference" not in v:
            return "-"
        word = f"**{v['verdict']}**" if v["verdict"] in ("wins", "loses") else v["verdict"]
        return f"{v['mean_difference']:+.3f}, {word}"

    out = [
        "| head | ImageNet: mean IoU | ImageNet: boundary IoU | ImageNet: pixel accuracy | random: mean IoU "
        "| random: boundary IoU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h, name in SHOWN.items():
        a, b = rows.get(f"{h}/imagenet", {}), rows.get(f"{h}/none", {})
        cells = [_cell(a.get(f, {})) for f in ("mean_iou", "boundary_iou", "pixel_accuracy")]
        cells += [_cell(b.get(f, {})) for f in ("mean_iou", "boundary_iou")]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += [
        "",
        "| head (ImageNet) | boundary IoU vs FCN-32s | mean IoU vs FCN-32s | ImageNet vs random, mean IoU |",
        "| --- | --- | --- | --- |",
    ]
    for h, name in SHOWN.items():
        ref = f"{REFERENCE_HEAD}/imagenet"
        vs32 = (
            ["—", "—"] if h == REFERENCE_HEAD else [said(f"{h}/imagenet", ref, f) for f in ("boundary_iou", "mean_iou")]
        )
        out.append(f"| {name} | {vs32[0]} | {vs32[1]} | {said(f'{h}/imagenet', f'{h}/none', 'mean_iou')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data at 64 px, 1 seed, 1+1 epochs")
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    ap.add_argument("--weights", nargs="+", default=list(WEIGHTS), choices=WEIGHTS)
    ap.add_argument("--seeds", nargs="+", type=int, help="tlkit --seed values (default 0 1 2; --quick: 0)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (results do not depend on it)")
    ap.add_argument("--work", help="folder for the data and runs (default: a temporary folder, deleted)")
    ap.add_argument("--out", help="JSON to write (default: results/segment.json; --quick: results/segment.quick.json)")
    ap.add_argument("--markdown", metavar="JSON", help="print the README's tables from a recorded result; run nothing")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    sizes = QUICK if args.quick else FULL
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(SEEDS))
    out = Path(args.out) if args.out else RESULTS / ("segment.quick.json" if args.quick else "segment.json")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tlkit-segment-"))
    t0 = time.perf_counter()
    try:
        result = measure(args, sizes, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "quick": bool(args.quick),
        "machine": machine(),
        "common_flags": COMMON,
        "weights_flags": WEIGHTS_FLAGS,
        "data": {**sizes["data"], "seed": DATA_SEED},
        "input_size": [sizes["input"], sizes["input"]],
        "epochs": {w: list(e) for w, e in sizes["epochs"].items()},
        "seeds": list(args.seeds),
        "boundary_band": "3 px on each side of the truth's class boundaries",
        "verdict_rule": "wins: worst seed above the best seed of the reference; loses: best seed below its worst",
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
