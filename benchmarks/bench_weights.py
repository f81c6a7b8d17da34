"""EfficientNet-Lite0 weights: first conversion (legacy .pth -> Keras) vs cached load.

Run: ``.venv/bin/python benchmarks/bench_weights.py [--repeats N]``. Both paths run in
one process against a fresh temporary KERAS_HOME, so the first conversion really is
the first. Each timing covers what ``tlkit.build("efficientnet_lite0",
weights="imagenet")`` does: hash the source, build the model, then convert (and write
the cache) or load the cache. Also timed separately: building the model alone, and reading
the .pth alone with the restricted unpickler. Writes ``benchmarks/results/weights.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "weights.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np

    from tlkit.models.efficientnet_lite import efficientnet_lite0
    from tlkit.weights import resolve as W
    from tlkit.weights.torch_legacy import load_state_dict

    efficientnet_lite0()  # warm up Keras/TF so the first timing is not the import
    source = W.lite0_source_path()
    rows: dict[str, list[float]] = {"build_model_only": [], "read_pth": [], "first_conversion": [], "cached_load": []}
    checks: list[bool] = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        efficientnet_lite0()  # the part of both paths that is not about weights
        rows["build_model_only"].append(time.perf_counter() - t)
        t = time.perf_counter()
        load_state_dict(source)
        rows["read_pth"].append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory(prefix="tlkit-bench-") as home:
            os.environ["KERAS_HOME"] = home
            t = time.perf_counter()
            converted, info = W.lite0_imagenet_model()
            rows["first_conversion"].append(time.perf_counter() - t)
            assert not info["from_cache"]
            t = time.perf_counter()
            cached, info = W.lite0_imagenet_model()
            rows["cached_load"].append(time.perf_counter() - t)
            assert info["from_cache"]
            checks.append(all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(converted.weights, cached.weights)))
            cache_bytes = os.path.getsize(info["cache"])
    os.environ.pop("KERAS_HOME", None)

    summary = {k: {"median_s": statistics.median(v), "min_s": min(v), "runs_s": v} for k, v in rows.items()}
    speedup = summary["first_conversion"]["median_s"] / summary["cached_load"]["median_s"]
    build = summary["build_model_only"]["median_s"]
    weights_only = {k: summary[k]["median_s"] - build for k in ("first_conversion", "cached_load")}
    result = {
        "benchmark": "efficientnet_lite0 ImageNet weights: first conversion vs cached load",
        "source": source.name,
        "source_bytes": source.stat().st_size,
        "cache_bytes": cache_bytes,
        "repeats": args.repeats,
        "results": summary,
        "speedup_cached_vs_first": speedup,
        "weights_part_median_s": weights_only,
        "weights_identical": all(checks),
        "environment": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    print(f"{'step':<18}{'median s':>10}{'min s':>10}")
    for k, v in summary.items():
        print(f"{k:<18}{v['median_s']:>10.3f}{v['min_s']:>10.3f}")
    print(
        f"cached load is {speedup:.1f}x faster end to end; without the model build: conversion "
        f"{weights_only['first_conversion']:.3f} s vs cached {weights_only['cached_load']:.3f} s; "
        f"weights identical: {all(checks)}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
