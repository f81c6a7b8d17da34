"""Beyond one machine, measured on this one: a two-worker finetune and a Beam extraction
against their single-process counterparts, as the user runs them (the installed ``tlkit``).

Run: ``.venv/bin/python benchmarks/bench_distributed.py [--rounds N] [--images N]``. Each
round runs the four commands back to back (interleaved, so a slow minute of a shared
machine hits both sides); the best wall time of each is kept. On one 2-core machine the
distributed forms cannot be faster: two workers share the cores and every step waits for
a collective, and Beam starts worker processes, stages the model and shuffles rows. The
ratios say what that overhead costs at this size. Writes ``benchmarks/results/distributed.json``.
"""

from __future__ import annotations

import argparse
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


def _timed(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "TLKIT_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run([TLKIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"tlkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "distributed.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tlkit-bench-dist-"))
    data = _folder(work / "data", args.images)
    train = [
        "finetune",
        "--data",
        str(data),
        "--base",
        "cifar_example",
        "--weights",
        "none",
        "--input-size",
        "32",
        "32",
        "--batch-size",
        "32",
        "--no-augment",
        "--epochs",
        "3",
        "--finetune-epochs",
        "0",
        "--quiet",
        "--force",
    ]
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
