"""Training throughput (images/s): head only (stage 1) vs. top blocks unfrozen (stage 2) vs. all unfrozen,
and head training on cached features, measured side by side in one run on synthetic images.

Pure Keras (no tf.data), so the same script runs on the TensorFlow backend here and on
the JAX backend of a GPU machine:  KERAS_BACKEND=jax python benchmarks/bench_train.py

    python benchmarks/bench_train.py [--base efficientnet_lite0] [--size 224] [--batch 32] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _throughput(model, x, y, steps: int, batch: int) -> float:
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # compile + warm-up
    n = steps * batch
    t0 = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()

    import keras

    from tlkit.finetune import heads, train

    gpus = (
        [d for d in keras.config.list_devices() if "gpu" in str(d).lower()]
        if hasattr(keras.config, "list_devices")
        else []
    )
    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    x = rng.uniform(0, 255, (n, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 10, n).astype("int32")
    keras.utils.set_random_seed(0)
    model = heads.build_classifier(args.base, num_classes=10, weights=None, input_size=(args.size, args.size))
    cfg = train.StageConfig(stage=1, epochs=1, lr=1e-3)
    rows = []

    train.compile_model(model, cfg, 10)
    rows.append(("head only (stage 1)", _throughput(model, x, y, args.steps, args.batch)))
    blocks = heads.unfreeze_top(model, 2)
    train.compile_model(model, cfg, 10)
    rows.append((f"top 2 blocks unfrozen ({', '.join(blocks)})", _throughput(model, x, y, args.steps, args.batch)))
    heads.unfreeze_top(model, "all")
    train.compile_model(model, cfg, 10)
    rows.append(("all blocks unfrozen", _throughput(model, x, y, args.steps, args.batch)))
    # --cache-features: one forward pass to cache, then epochs on the pooled vectors only.
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    t0 = time.perf_counter()
    feats = pooled.predict(x, batch_size=args.batch, verbose=0)
    cache_rate = n / (time.perf_counter() - t0)
    head_in = keras.Input(feats.shape[1:])
    h = head_in
    for layer in model.layers[[l.name for l in model.layers].index("avg_pool") + 1 :]:
        h = layer(h)
    head = keras.Model(head_in, h)
    train.compile_model(head, cfg, 10)
    rows.append(("cached features: caching pass (forward only)", cache_rate))
    rows.append(("cached features: head epoch", _throughput(head, feats, y, args.steps, args.batch)))

    base_rate = rows[0][1]
    print(
        f"{args.base} at {args.size}x{args.size}, batch {args.batch}, backend {keras.backend.backend()}, "
        f"{'GPU' if gpus else 'CPU'}"
    )
    print(f"{'configuration':52s} {'images/s':>10s} {'vs stage 1':>10s}")
    for name, rate in rows:
        print(f"{name:52s} {rate:10.1f} {rate / base_rate:9.2f}x")
    result = {
        "base": args.base,
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "backend": keras.backend.backend(),
        "device": "GPU" if gpus else "CPU",
        "machine": platform.processor() or platform.machine(),
        "rows": [{"configuration": n_, "images_per_s": r, "ratio_vs_stage1": r / base_rate} for n_, r in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
