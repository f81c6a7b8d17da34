"""Dense evaluation vs. the crops it replaces, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_dense.py [--repeats N]``. Writes
``benchmarks/results/dense.json`` and prints a table.

* VGG16 (keras.applications, random weights: timing only) converted by
  :mod:`tlkit.dense.convert`, evaluated densely on a 384x384 image (one pass, a 6x6
  map), against the original 224x224 network on the 36 crops the map stands for
  (6x6 grid, stride 32), batched (``--crop-batch`` per forward pass).
* The same at stride 16 (4 shifted passes, an 11x11 map) against its 121 crops.
  Timing 121 crops costs ~3.4x the 36; by default their time is extrapolated
  from the per-crop time measured above (marked ``extrapolated``); ``--full``
  times them.
* EfficientNet-Lite0 (real weights not needed; random init): dense at 384 (6x6)
  vs. its 36 crops.

Every timing is the median of ``--repeats`` runs after one warm-up, dense and
crops alternating within each repeat so both see the same machine load. Both
paths run the same way (compiled ``model.predict_on_batch``, on whatever device
Keras has). The ratio of the fastest runs is reported too: on a shared machine
the minimum is the least disturbed estimate. Multiply-adds are counted analytically (convolutions and dense
layers at the actual shapes); the crop count times the original's, against the
converted model's at 384, is the speed-up a perfect implementation would reach.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _macs(model: Any, input_hw: tuple[int, int]) -> int:
    """Multiply-adds of one forward pass at ``input_hw`` (Conv2D, DepthwiseConv2D, Dense)."""
    import keras

    from tlkit.dense.convert import (  # shape inference at any input size
        _nodes_in_order,
        _static_shapes,
    )

    # The evaluator's model is Preprocess + the converted network, nested: count the network.
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) == 1:
        model = inner[0]
    shapes = _static_shapes(model, [(1, *input_hw, model.inputs[0].shape[-1])])
    total = 0
    for node in _nodes_in_order(model):
        op = node.operation
        if not isinstance(op, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            continue
        cin = shapes[id(node.input_tensors[0])][-1]
        out = shapes[id(node.outputs[0])]
        positions = 1
        for d in out[1:-1]:
            positions *= int(d)
        if isinstance(op, keras.layers.DepthwiseConv2D):
            kh, kw = op.kernel_size
            total += positions * int(out[-1]) * kh * kw
        elif isinstance(op, keras.layers.Conv2D):
            kh, kw = op.kernel_size
            total += positions * int(out[-1]) * kh * kw * int(cin) // op.groups
        else:
            total += positions * int(cin) * op.units
    return total


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Warm up each function once, then time them alternately; median and all runs (seconds)."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t)
    return {
        k: {"median_s": statistics.median(v), "min_s": min(v), "runs_s": [round(x, 4) for x in v]}
        for k, v in runs.items()
    }


def _crops(image: Any, size: int, step: int, rows: int, cols: int) -> Any:
    import numpy as np

    # "same"-padded nets may score windows hanging over the bottom/right edge: pad as they do.
    need = ((rows - 1) * step + size - image.shape[0], (cols - 1) * step + size - image.shape[1])
    image = np.pad(image, ((0, max(0, need[0])), (0, max(0, need[1])), (0, 0)))
    return np.stack(
        [image[i * step : i * step + size, j * step : j * step + size] for i in range(rows) for j in range(cols)]
    )


def _forward_batched(model: Any, x: Any, batch: int) -> None:
    for i in range(0, len(x), batch):
        model.predict_on_batch(x[i : i + batch])  # compiled, as tlkit.dense.evaluator runs its passes


def bench_model(name: str, *, size: int, repeats: int, crop_batch: int, stride16: bool, full: bool) -> dict[str, Any]:
    """Dense at ``size`` vs. its crops for registry model ``name`` (random weights)."""
    import numpy as np

    import tlkit
    from tlkit.dense.evaluator import DenseEvaluator, dense_map_size

    spec = tlkit.get_spec(name)
    model = tlkit.build(name)
    ev = DenseEvaluator(model, preprocessing=spec.preprocessing, batch_size=crop_batch)
    conv = ev.conversion
    native = conv.native_size[0]
    s = conv.stride
    image = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype("float32")
    from tlkit.models.preprocessing import preprocess_numpy

    rows, cols = conv.output_size(size, size)
    crops = _crops(image, native, s, rows, cols)  # raw pixels: both paths preprocess inside the timing
    crop_macs = _macs(model, (native, native))
    dense_macs = _macs(conv.model, (size, size))
    times = _median_times(
        {
            "dense": lambda: ev.score_maps(image[None]),
            "crops": lambda: _forward_batched(model, preprocess_numpy(crops, spec.preprocessing), crop_batch),
        },
        repeats,
    )
    out: dict[str, Any] = {
        "model": name,
        "image": [size, size],
        "window": [native, native],
        "stride32": {
            "map_shape": [rows, cols, int(conv.model.output_shape[-1])],
            "crops": rows * cols,
            "dense_s": times["dense"]["median_s"],
            "crops_s": times["crops"]["median_s"],
            "dense_runs_s": times["dense"]["runs_s"],
            "crops_runs_s": times["crops"]["runs_s"],
            "time_ratio": times["crops"]["median_s"] / times["dense"]["median_s"],
            "time_ratio_min": times["crops"]["min_s"] / times["dense"]["min_s"],
            "dense_macs": dense_macs,
            "crops_macs": rows * cols * crop_macs,
            "mac_ratio": rows * cols * crop_macs / dense_macs,
        },
    }
    if stride16:
        step = s // 2
        r16, c16 = dense_map_size(conv, size, size, stride=step)
        crops16 = _crops(image, native, step, r16, c16)
        pass_macs = sum(_macs(conv.model, (size - dy, size - dx)) for dy in (0, step) for dx in (0, step))
        fns: dict[str, Callable[[], Any]] = {"dense16": lambda: ev.score_maps(image[None], stride=step)}
        if full:
            fns["crops16"] = lambda: _forward_batched(model, preprocess_numpy(crops16, spec.preprocessing), crop_batch)
        t16 = _median_times(fns, repeats)
        per_crop = times["crops"]["median_s"] / (rows * cols)
        crops16_s = t16["crops16"]["median_s"] if full else per_crop * r16 * c16
        crops16_min = t16["crops16"]["min_s"] if full else times["crops"]["min_s"] / (rows * cols) * r16 * c16
        out["stride16"] = {
            "map_shape": [r16, c16, int(conv.model.output_shape[-1])],
            "crops": r16 * c16,
            "passes": 4,
            "dense_s": t16["dense16"]["median_s"],
            "dense_runs_s": t16["dense16"]["runs_s"],
            "crops_s": crops16_s,
            "crops_timing": "measured"
            if full
            else f"extrapolated: {r16 * c16} x the per-crop time of the stride-32 run",
            "time_ratio": crops16_s / t16["dense16"]["median_s"],
            "time_ratio_min": crops16_min / t16["dense16"]["min_s"],
            "dense_macs": pass_macs,
            "crops_macs": r16 * c16 * crop_macs,
            "mac_ratio": r16 * c16 * crop_macs / pass_macs,
        }
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_parts(name: str, *, size: int, repeats: int, crop_batch: int) -> dict[str, Any]:
    """Per-layer times of the dense pass vs. the crops it replaces, interleaved, fastest kept.

    Each convolution and pooling layer of the converted model runs alone (a compiled
    ``tf.function``) on the input it sees in the dense pass (1 x size x size) and in the
    crops (crop_batch x window x window). Where a layer's time ratio is below its
    multiply-add ratio, that layer is where the whole-pass ratio is lost.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import tlkit
    from tlkit.dense.convert import to_fully_convolutional

    model = tlkit.build(name)
    conv = to_fully_convolutional(model)
    native = int(model.inputs[0].shape[1])
    rows = (size - native) // 32 + 1
    rng = np.random.default_rng(0)
    xs = {
        "dense": rng.uniform(0, 255, (1, size, size, 3)).astype("float32"),
        "crops": rng.uniform(0, 255, (min(crop_batch, rows * rows), native, native, 3)).astype("float32"),
    }
    layers = [lay for lay in conv.layers if isinstance(lay, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    inputs: dict[str, dict[str, Any]] = {"dense": {}, "crops": {}}
    for key, x in xs.items():
        t = tf.constant(x)
        for lay in layers:
            inputs[key][lay.name] = t
            t = lay(t)
    fns = {lay.name: tf.function(lay.__call__) for lay in layers}
    best: dict[tuple[str, str], float] = {}
    for r in range(repeats + 1):  # the first round compiles and warms up
        for lay in layers:
            for key in ("dense", "crops"):
                x = inputs[key][lay.name]
                t0 = time.perf_counter()
                fns[lay.name](x).numpy()
                dt = time.perf_counter() - t0
                if r:
                    best[(lay.name, key)] = min(best.get((lay.name, key), float("inf")), dt)
    scale = rows * rows / len(xs["crops"])  # crop batches of one image's crops
    out = []
    for lay in layers:
        macs = {}
        for key in ("dense", "crops"):
            x = inputs[key][lay.name]
            y_shape = lay.compute_output_shape(tuple(x.shape))
            if isinstance(lay, keras.layers.Conv2D):
                kh, kw = lay.kernel_size
                macs[key] = int(np.prod(y_shape)) * kh * kw * int(x.shape[-1]) // lay.groups
            else:
                macs[key] = int(np.prod(x.shape))
        crops_s = best[(lay.name, "crops")] * scale
        out.append(
            {
                "layer": lay.name,
                "dense_in": list(inputs["dense"][lay.name].shape),
                "crops_in": list(inputs["crops"][lay.name].shape),
                "dense_s": best[(lay.name, "dense")],
                "crops_s": crops_s,
                "time_ratio": crops_s / best[(lay.name, "dense")],
                "mac_ratio": macs["crops"] * scale / macs["dense"],
            }
        )
    dense_total = sum(p["dense_s"] for p in out)
    crops_total = sum(p["crops_s"] for p in out)
    return {
        "model": name,
        "image": [size, size],
        "crops": rows * rows,
        "layers": out,
        "dense_s": dense_total,
        "crops_s": crops_total,
        "time_ratio": crops_total / dense_total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--size", type=int, default=384, help="image size (square)")
    parser.add_argument("--crop-batch", type=int, default=36, help="crops per forward pass")
    parser.add_argument("--full", action="store_true", help="time the stride-16 crops instead of extrapolating")
    parser.add_argument("--skip-efficientnet", action="store_true")
    parser.add_argument("--skip-parts", action="store_true", help="skip the per-layer timing of VGG16")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dense.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    started = time.perf_counter()
    results = [
        bench_model(
            "vgg16", size=args.size, repeats=args.repeats, crop_batch=args.crop_batch, stride16=True, full=args.full
        )
    ]
    if not args.skip_efficientnet:
        results.append(
            bench_model(
                "efficientnet_lite0",
                size=args.size,
                repeats=args.repeats,
                crop_batch=args.crop_batch,
                stride16=True,
                full=args.full,
            )
        )
    parts = (
        None
        if args.skip_parts
        else bench_parts("vgg16", size=args.size, repeats=args.repeats, crop_batch=args.crop_batch)
    )
    try:
        import tensorflow as tf  # only to name the device in the report

        devices = [d.device_type for d in tf.config.list_logical_devices()]
    except Exception:  # noqa: BLE001
        devices = []
    report = {
        "benchmark": "dense evaluation vs. crops (tlkit.dense.convert + tlkit.dense.evaluator)",
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "devices": devices,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "crop_batch": args.crop_batch,
        "goal": "VGG16 stride-32 time ratio >= 10 (MAC ratio ~11 is the limit)",
        "results": results,
        "parts": parts,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    header = ("model", "stride", "map", "crops", "dense s", "crops s", "time ratio", "(fastest)", "MAC ratio")
    rows = []
    for r in results:
        for key in ("stride32", "stride16"):
            if key not in r:
                continue
            x = r[key]
            note = "" if key == "stride32" or x["crops_timing"] == "measured" else " (extrap.)"
            rows.append(
                (
                    r["model"],
                    key[6:],
                    "x".join(map(str, x["map_shape"])),
                    str(x["crops"]),
                    f"{x['dense_s']:.3f}",
                    f"{x['crops_s']:.3f}{note}",
                    f"{x['time_ratio']:.1f}x",
                    f"{x['time_ratio_min']:.1f}x",
                    f"{x['mac_ratio']:.1f}x",
                )
            )
    widths = [max(len(h), *(len(t[i]) for t in rows)) for i, h in enumerate(header)]
    print(f"image {args.size}x{args.size}, median of {args.repeats} after a warm-up; devices: {devices}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in rows:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    if parts:
        print(f"\nper layer, {parts['model']} (each layer alone, compiled; crops scaled to {parts['crops']}):")
        head = ("layer", "dense in", "crops in", "dense s", "crops s", "time", "MACs")
        print(f"{head[0]:14s} {head[1]:>18s} {head[2]:>18s} {head[3]:>8s} {head[4]:>8s} {head[5]:>6s} {head[6]:>6s}")
        for p in parts["layers"]:
            print(
                f"{p['layer']:14s} {str(tuple(p['dense_in'])):>18s} {str(tuple(p['crops_in'])):>18s} "
                f"{p['dense_s']:8.4f} {p['crops_s']:8.4f} {p['time_ratio']:5.1f}x {p['mac_ratio']:5.1f}x"
            )
        print(
            f"sum of layers: dense {parts['dense_s']:.3f} s, crops {parts['crops_s']:.3f} s, {parts['time_ratio']:.1f}x"
        )
    print(f"cpu: {report['cpu']}")
    print(f"wrote {args.out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
