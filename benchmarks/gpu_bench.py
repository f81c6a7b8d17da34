"""GPU check on the Keras 3 JAX backend: training throughput and dense evaluation, synthetic tensors only.

Run: ``benchmarks/gpu.sh`` (or ``KERAS_BACKEND=jax python benchmarks/gpu_bench.py [--tiny] [--out PATH]``).
Needs keras 3 and jax (``pip install "tlkit[test]"`` brings ``jax[cpu]``; on a GPU machine
``pip install "jax[cuda12]"``). It imports neither TensorFlow nor tlkit, so it runs on a
machine that has only JAX (and perhaps PyTorch) installed.

* Training: ``keras.applications`` ResNet50 and VGG16 (``weights=None``, 1000 classes) at 224x224,
  images/s of ``train_on_batch`` on one device-resident batch (data loading excluded: this is the
  rate the input pipeline has to feed), in float32, ``mixed_float16`` and ``mixed_bfloat16``.
* Dense evaluation: a VGG16-like fully convolutional network (the VGG16 body plus fc6/fc7/fc8 as
  convolutions) on one 384x384 image, one pass (a 6x6 map of class scores), against the plain
  network on the 36 224x224 crops the map stands for (stride 32), batched in one call.

Every measure runs ``--rounds`` times, interleaved (each round measures every row once), and the
best is kept: a shared machine drifts, and the fastest run is the least disturbed one.
``--tiny`` shrinks images, batches and steps so the whole check runs on a CPU in about a minute
(CI runs it so the script never rots); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: this check is about the JAX backend

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
MODELS = ("resnet50", "vgg16")
FULL = {"size": 224, "batch": 128, "steps": 20, "warmup": 3, "dense_size": 384, "crop": 224, "dense_calls": 5}
TINY = {"size": 32, "batch": 2, "steps": 2, "warmup": 1, "dense_size": 64, "crop": 32, "dense_calls": 1}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(name: str, size: int, precision: str) -> Any:
    import keras

    keras.mixed_precision.set_dtype_policy(precision)
    try:
        app = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}[name]
        model = app(weights=None, input_shape=(size, size, 3), classes=1000)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    # Keras wraps the optimizer in a LossScaleOptimizer itself for a mixed_float16 model.
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def _train_rate(model: Any, x: Any, y: Any, steps: int, warmup: int) -> float:
    """Images/s of ``steps`` training steps on one batch (each step returns its loss: synchronised)."""
    for _ in range(warmup):  # compile + warm-up
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * int(x.shape[0]) / (time.perf_counter() - t0)


def _dense_models(crop: int) -> tuple[Any, Any]:
    """(fully convolutional VGG16-like net with any input size, the same net on ``crop`` x ``crop``)."""
    import keras

    k = crop // 32  # fc6 sees pool5's whole window: 7x7 at 224
    layers = keras.layers

    def head(x: Any) -> Any:
        x = layers.Conv2D(4096, k, activation="relu", name="fc6")(x)
        x = layers.Conv2D(4096, 1, activation="relu", name="fc7")(x)
        return layers.Conv2D(1000, 1, activation="softmax", name="fc8")(x)

    body = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    inp = keras.Input((None, None, 3))
    dense = keras.Model(inp, head(body(inp)), name="vgg16_dense")
    inp_c = keras.Input((crop, crop, 3))
    crops = keras.Model(inp_c, dense(inp_c), name="vgg16_crops")  # the same weights, fixed size
    return dense, crops


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(cfg: dict[str, int], rounds: int) -> dict[str, Any]:
    """Measure every row ``rounds`` times, interleaved; keep each row's best."""
    import jax
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    b, s = cfg["batch"], cfg["size"]
    x = jax.device_put(rng.uniform(0, 255, (b, s, s, 3)).astype("float32"))
    y = jax.device_put(rng.integers(0, 1000, b).astype("int32"))
    models = {(m, p): _build(m, s, p) for m in MODELS for p in PRECISIONS}

    big, crop = cfg["dense_size"], cfg["crop"]
    side = (big - crop) // 32 + 1
    dense, crops_model = _dense_models(crop)
    image = rng.uniform(0, 255, (1, big, big, 3)).astype("float32")
    crops = np.stack(
        [image[0, i * 32 : i * 32 + crop, j * 32 : j * 32 + crop] for i in range(side) for j in range(side)]
    )
    image, crops = jax.device_put(image), jax.device_put(crops)
    for m in (dense, crops_model):  # compile once outside the timing
        m.predict_on_batch(image if m is dense else crops)

    best: dict[str, float] = {}
    for _ in range(rounds):
        for (m, p), model in models.items():
            key = f"train {m} {p}"
            best[key] = max(best.get(key, 0.0), _train_rate(model, x, y, cfg["steps"], cfg["warmup"]))
        for _ in range(cfg["dense_calls"]):  # dense and crops alternate: both see the same load
            t_dense = _seconds(lambda: np.asarray(dense.predict_on_batch(image)))
            t_crops = _seconds(lambda: np.asarray(crops_model.predict_on_batch(crops)))
            best["dense"] = max(best.get("dense", 0.0), 1.0 / t_dense)
            best["crops"] = max(best.get("crops", 0.0), 1.0 / t_crops)

    rows = []
    for m in MODELS:
        base = best[f"train {m} float32"]
        for p in PRECISIONS:
            rate = best[f"train {m} {p}"]
            rows.append(
                {
                    "row": f"train {m} {p}",
                    "what": "training images/s",
                    "images_per_s": rate,
                    "bound": f"train {m} float32",
                    "ratio": rate / base,
                }
            )
    n_crops = side * side
    rows.append(
        {
            "row": "dense vgg16",
            "what": f"one {big}x{big} image, one pass ({side}x{side} map)",
            "images_per_s": best["dense"],
            "bound": None,
            "ratio": None,
        }
    )
    rows.append(
        {
            "row": "crops vgg16",
            "what": f"{n_crops} crops of {crop}x{crop}, batched, per image",
            "images_per_s": best["crops"],
            "bound": "dense vgg16",
            "ratio": best["crops"] / best["dense"],
        }
    )
    return {
        "benchmark": "gpu_bench: Keras 3 JAX backend, synthetic tensors",
        "keras": keras.__version__,
        "jax": jax.__version__,
        "backend": keras.backend.backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "rounds": rounds,
        "config": cfg,
        "dense_speedup": best["dense"] / best["crops"],
        "crops": n_crops,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes and steps (CPU, CI): figures mean nothing")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds, best kept (default 3; tiny 1)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default 128; tiny 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per round (default 20)")
    ap.add_argument(
        "--out",
        default=None,
        help="JSON path (default benchmarks/results/gpu.json; with --tiny a file in the temp folder)",
    )
    args = ap.parse_args(argv)
    cfg = dict(TINY if args.tiny else FULL)
    for k in ("batch", "steps"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    rounds = args.rounds or (1 if args.tiny else 3)
    default_out = (
        Path(os.environ.get("TMPDIR", "/tmp")) / "tlkit-gpu-tiny.json"
        if args.tiny
        else Path(__file__).parent / "results" / "gpu.json"
    )
    out = Path(args.out) if args.out else default_out

    result = run(cfg, rounds)
    result["tiny"] = bool(args.tiny)
    print(f"CPU: {result['cpu']} ({result['cpu_count']} cores); devices: {', '.join(result['devices'])}")
    print(
        f"keras {result['keras']}, jax {result['jax']}, backend {result['backend']}; "
        f"train {cfg['size']}x{cfg['size']} batch {cfg['batch']}, {rounds} round(s), best kept"
        + ("  [tiny: figures mean nothing]" if args.tiny else "")
    )
    print(f"{'row':30s} {'images/s':>10s} {'ratio':>7s}  vs")
    for r in result["rows"]:
        ratio = f"{r['ratio']:7.2f}" if r["ratio"] is not None else f"{'':7s}"
        print(f"{r['row']:30s} {r['images_per_s']:10.2f} {ratio}  {r['bound'] or ''}")
    print(f"dense speed-up over {result['crops']} crops: {result['dense_speedup']:.2f}x")
    if "tensorflow" in sys.modules:  # the point of this script: it must never need TensorFlow
        raise SystemExit("gpu_bench imported tensorflow")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
