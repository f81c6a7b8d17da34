"""Beyond one machine, measured on this one: a two-worker finetune and a Beam extraction
against their single-process counterparts, as the user runs them (the installed ``tlkit``).

Run: ``.venv/bin/python benchmarks/bench_distributed.py [--rounds N] [--images N]``. Each
round runs the four commands back to back (interleaved, so a slow minute of a shared
machine hits both sides); the best wall time of each is kept. On one 2-core machine the
distributed forms cannot be faster: two workers share the cores and every step waits for
a collective, and Beam starts worker processes, stages the model and shuffles rows. The
ratios say what that overhead costs at this size. Writes ``benchmarks/results/distributed.json``.

``--part decode`` (also part of the default ``all``): one epoch as decode work per worker. The
same finetune on camera-size JPEGs (``--photos`` of ``--photo-size``), as 1 process and as
``--workers 2``, with ``TLKIT_DEBUG_OPENED`` set so every process logs each file its input
pipeline opens: the table gives the files each worker decoded per epoch (training and
validation, without the chief's final evaluation) and the wall time of the second epoch
(``seconds`` in history.csv; the first includes tracing). Multi-worker input is sharded by
file (``tlkit.data.sharding``), so each of 2 workers decodes half the files. Writes
``benchmarks/results/distributed_decode.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TLKIT = str(Path(sys.executable).with_name("tlkit"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_util as util  # noqa: E402  (benchmarks/ is the script's folder)


def _folder(root: Path, n: int, size: int = 64) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("bright", "dark", "stripes"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n // 3):
            img = rng.integers(0, 60, (size, size, 3))
            if cls == "bright":
                img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 230
            elif cls == "dark":
                img += 120
            else:
                img[::4] = 250
            Image.fromarray(img.clip(0, 255).astype("uint8")).save(root / cls / f"{i}.png")
    return root


def _timed(args: list[str], cwd: Path, **extra: str) -> float:
    env = {**os.environ, "TLKIT_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", **extra}
    t0 = time.perf_counter()
    proc = subprocess.run([TLKIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"tlkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _opened(folder: Path) -> dict[str, dict[str, int]]:
    """Per process log of TLKIT_DEBUG_OPENED: files opened per tag (epoch number, or the split)."""
    out = {}
    for f in sorted(folder.glob("opened-*.txt")):
        counts: dict[str, int] = {}
        for line in f.read_text().splitlines():
            tag = line.split("\t", 1)[0]
            counts[tag] = counts.get(tag, 0) + 1
        out[f.stem.removeprefix("opened-")] = counts
    return out


def _train_args(data: Path, epochs: int) -> list[str]:
    """A tiny finetune on ``data`` (the model is cheap, so the epoch's time is the input's)."""
    return [
        "finetune", "--data", str(data), "--base", "cifar_example", "--weights", "none", "--input-size", "32", "32",
        "--batch-size", "32", "--no-augment", "--epochs", str(epochs), "--finetune-epochs", "0", "--quiet", "--force",
    ]  # fmt: skip


def decode_share(work: Path, rounds: int, photos: int, photo_size: tuple[int, int], epochs: int = 2) -> dict:
    """One epoch as decode work per worker, 1 process against --workers 2 (see the module's docstring)."""
    data = work / "photos"
    util.write_photos(data, photos, photo_size, classes=2)
    train = _train_args(data, epochs)
    rows = {}
    for _ in range(rounds):
        for workers in (1, 2):
            logs = work / f"opened-{workers}"
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir()
            name = f"decode{workers}"
            extra = ["--workers", "2"] if workers == 2 else []
            wall = _timed([*train, "--name", name, *extra], work, TLKIT_DEBUG_OPENED=str(logs))
            with open(work / "runs" / name / "history.csv") as f:
                epoch_s = float(list(csv.DictReader(f))[-1]["seconds"])
            opened = _opened(logs)
            last = str(epochs - 1)
            row = rows.setdefault(workers, {"epoch_s": float("inf"), "command_s": float("inf")})
            row["epoch_s"] = min(row["epoch_s"], epoch_s)
            row["command_s"] = min(row["command_s"], wall)
            row["train_files_per_worker"] = [c.get(last, 0) for c in opened.values()]
            # After training the chief (listed first) evaluates the whole validation split once more.
            val = [c.get("val", 0) for c in opened.values()]
            split = sum(val) // (epochs + 1)
            row["val_files_per_worker"] = [(v - (split if i == 0 else 0)) // epochs for i, v in enumerate(val)]
    one, two = rows[1], rows[2]
    print(f"one epoch, {photos} JPEGs of {photo_size[0]}x{photo_size[1]} (best of {rounds}; {os.cpu_count()} cores)")
    head = f"{'workers':>7s} {'train files decoded per worker':>31s} {'val files per worker':>21s} {'epoch s':>8s}"
    print(head + f" {'command s':>10s}")
    for w, r in rows.items():
        print(
            f"{w:7d} {'/'.join(map(str, r['train_files_per_worker'])):>31s} "
            f"{'/'.join(map(str, r['val_files_per_worker'])):>21s} {r['epoch_s']:8.2f} {r['command_s']:10.1f}"
        )
    ratios = {
        "decode_per_worker_2_vs_1": max(two["train_files_per_worker"]) / max(one["train_files_per_worker"]),
        "epoch_s_2_vs_1": two["epoch_s"] / one["epoch_s"],
    }
    print(
        f"2 workers: each decodes {ratios['decode_per_worker_2_vs_1']:.2f}x the files of 1 process per epoch; "
        f"epoch wall time {ratios['epoch_s_2_vs_1']:.2f}x"
    )
    return {"photos": photos, "photo_size": list(photo_size), "rounds": rounds, "workers": rows, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--part", choices=("all", "commands", "decode"), default="all")
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--photo-size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "distributed.json"))
    parser.add_argument("--decode-out", default=str(Path(__file__).parent / "results" / "distributed_decode.json"))
    args = parser.parse_args(argv)
    if args.part in ("all", "decode"):
        work = Path(tempfile.mkdtemp(prefix="tlkit-bench-decode-"))
        try:
            result = decode_share(work, args.rounds, args.photos, tuple(args.photo_size))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result["machine"] = util.machine()
        Path(args.decode_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.decode_out).write_text(json.dumps(result, indent=2))
        if args.part == "decode":
            return 0
    work = Path(tempfile.mkdtemp(prefix="tlkit-bench-dist-"))
    data = _folder(work / "data", args.images)
    train = _train_args(data, 3)
    extract = [
        "extract",
        "--base",
        "efficientnet_lite0",
        "--layer",
        "penultimate",
        "--data",
        str(data),
        "--input-size",
        "64",
        "64",
        "--force",
    ]
    cases = {
        "finetune, 1 process": train + ["--name", "one"],
        "finetune, 2 workers (--workers 2)": train + ["--name", "two", "--workers", "2"],
        "extract, 1 process": extract + ["--out", "local.parquet"],
        "extract, Beam FnApiRunner, 2 workers": extract + ["--out", "beam.parquet", "--runner", "beam"],
    }
    best = {k: float("inf") for k in cases}
    for _ in range(args.rounds):
        for name, cmd in cases.items():
            best[name] = min(best[name], _timed(cmd, work))
    shutil.rmtree(work, ignore_errors=True)
    ratio = {
        "finetune": best["finetune, 1 process"] / best["finetune, 2 workers (--workers 2)"],
        "extract": best["extract, 1 process"] / best["extract, Beam FnApiRunner, 2 workers"],
    }
    print(f"{'command (' + str(args.images) + ' images)':44s} {'best wall s':>11s}")
    for name, t in best.items():
        print(f"{name:44s} {t:11.1f}")
    print(
        f"speed of 2 workers relative to 1 process: finetune {ratio['finetune']:.2f}x, "
        f"extract {ratio['extract']:.2f}x (on {os.cpu_count()} cores)"
    )
    result = {
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor(), "python": sys.version},
        "images": args.images,
        "rounds": args.rounds,
        "best_wall_s": best,
        "speed_vs_one_process": ratio,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
