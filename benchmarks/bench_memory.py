"""The training memory budget (``tlkit inspect NAME --memory``) against TensorFlow's measured peak on CPU.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--quick]``. Writes
``benchmarks/results/memory.json`` and prints a table.

For each case a fresh process (:func:`tlkit.memory_measure.measure_peak`) builds the model with
random weights, runs two training steps (``train_on_batch``, MSE loss, no XLA) and reads the
second step's peak from TensorFlow's CPU BFC allocator (``TF_CPU_ALLOCATOR_USE_BFC=true``,
``tf.config.experimental.get_memory_info``). The estimate is the notes' rule as
:mod:`tlkit.memory_budget` applies it: weights, gradients, optimizer slots, every layer's output
x batch and as much again for their gradients, the input batch. *resident* is what the allocator
held before the step (weights, optimizer slots, the batch); *step* = peak - resident is what the
step itself allocated, against the estimate's batch-dependent terms plus the gradients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_util import machine  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "memory.json"

# (model, batch, optimizer, input size, oneDNN kernels): a LeNet-like net, a VGG-like all-conv net,
# VGG-11's body, a ResNet, an EfficientNet; the first two again with Eigen's kernels (oneDNN off).
CASES = [
    ("cifar_example", 64, "adam", None, True),
    ("cifar_example", 64, "sgd", None, True),
    ("allcnn_c", 32, "adam", None, True),
    ("allcnn_c", 32, "momentum", None, True),
    ("vgg11", 8, "adam", (64, 64), True),
    ("resnet18", 16, "adam", (64, 64), True),
    ("efficientnet_lite0", 16, "adam", (64, 64), True),
    ("efficientnet_lite0", 16, "sgd", (96, 96), True),
    ("cifar_example", 64, "adam", None, False),
    ("allcnn_c", 32, "adam", None, False),
]
QUICK = CASES[:1] + CASES[2:3]


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def _range(values: list[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two cases only")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from tlkit.memory_measure import measure_peak

    rows = []
    for name, batch, opt, size, onednn in QUICK if args.quick else CASES:
        t = time.perf_counter()
        r = measure_peak(name, batch, opt, size, onednn=onednn)
        e = r["estimate"]
        fixed = e["bytes"]["weights"] + e["bytes"]["optimizer_state"]
        step_estimate = e["total_bytes"] - fixed - e["bytes"]["input_batch"]
        step = r["peak_bytes"] - r["resident_bytes"]
        rows.append(
            {
                "model": name,
                "input": "x".join(str(v) for v in e["input_shape"]),
                "batch": batch,
                "optimizer": opt,
                "kernels": "oneDNN" if onednn else "Eigen",
                "estimate_bytes": e["total_bytes"],
                "peak_bytes": r["peak_bytes"],
                "ratio": round(r["ratio"], 3),
                "resident_bytes": r["resident_bytes"],
                "estimate_resident_bytes": fixed + e["bytes"]["input_batch"],
                "step_bytes": step,
                "estimate_step_bytes": step_estimate,
                "step_ratio": round(step_estimate / step, 3),
                "activations_per_image": e["activations_per_image"],
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
        tf_version, keras_version = r["tensorflow"], r["keras"]
        print(f"measured {name} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    header = f"{'model':<19}{'input':>9}{'batch':>6} {'opt':<9}{'kernels':<8}"
    header += f"{'estimate MB':>12}{'peak MB':>9}{'ratio':>7}"
    header += f"{'step est MB':>12}{'step MB':>9}{'ratio':>7}"
    print(header)
    for r in rows:
        print(
            f"{r['model']:<19}{r['input']:>9}{r['batch']:>6} {r['optimizer']:<9}{r['kernels']:<8}"
            f"{_mb(r['estimate_bytes']):>12}"
            f"{_mb(r['peak_bytes']):>9}{r['ratio']:>7.2f}{_mb(r['estimate_step_bytes']):>12}"
            f"{_mb(r['step_bytes']):>9}{r['step_ratio']:>7.2f}"
        )
    result = {
        "benchmark": "memory",
        "method": "TF_CPU_ALLOCATOR_USE_BFC=true; peak of the second train_on_batch from "
        "tf.config.experimental.get_memory_info('CPU:0'); MSE loss, jit_compile=False, random weights",
        "tensorflow": tf_version,
        "keras": keras_version,
        "machine": machine(),
        "rows": rows,
        "ratio_range_onednn": _range([r["ratio"] for r in rows if r["kernels"] == "oneDNN"]),
        "ratio_range_eigen": _range([r["ratio"] for r in rows if r["kernels"] == "Eigen"]),
    }
    if not args.quick or args.out != OUT:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
