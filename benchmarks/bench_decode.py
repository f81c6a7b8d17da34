"""JPEG decode speed on one CPU core: full decode vs DCT-domain downscaling (``decode_jpeg(ratio=2/4/8)``).

Run: ``python benchmarks/bench_decode.py [--repeats 5] [--out PATH]``; ``--smoke`` times one call each.

For a 3000x2250 and a 500x375 JPEG (q90, the same generated photos as bench_data.py), TensorFlow
limited to one thread (intra- and inter-op), each ``ratio`` in 1, 2, 4, 8 (where the image stays at
least 224 pixels on its shorter side after it): the decode alone, and decode + tlkit's resize to
224x224 (bilinear, antialiased, as ``tlkit.data.resize.resize``), in eager ops on one image at a
time. Each figure is the best of ``--repeats`` calls. These per-core rates are what
benchmarks/README.md's paper arithmetic (cores needed to feed a GPU) starts from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import _bench_util as util  # benchmarks/ is the script's folder, first on sys.path

SIZES = {"3000x2250": (3000, 2250), "500x375": (500, 375)}


def _augment_rate(tf: Any, repeats: int) -> float | None:
    """Images/s/core of tlkit's training augmentation alone: what is left per image once decoding is cached."""
    try:
        from tlkit.data.augment import augment_image
    except ImportError:  # run without tlkit on the path: the decode figures stand alone
        return None
    img = tf.constant(util.photo(0, (224, 224)))
    seed = tf.constant([1, 2], tf.int64)
    augment_image(img, (224, 224), seed).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            augment_image(img, (224, 224), seed).numpy()
        best = min(best, (time.perf_counter() - t0) / 10)
    return 1.0 / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="one call each (CI); figures mean nothing")
    ap.add_argument("--out", help="JSON path (default results/decode.json; --smoke: results/decode.smoke.json)")
    args = ap.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core: the per-core rate
    tf.config.threading.set_inter_op_parallelism_threads(1)
    mach = util.machine()
    print(f"CPU: {mach['cpu']} ({mach['cores']} cores; TensorFlow limited to 1 thread); best of {repeats}")
    rows = []
    for key, (w, h) in SIZES.items():
        raw = util.jpeg_bytes(util.photo(0, (w, h)))
        data = tf.constant(raw)
        for ratio in (1, 2, 4, 8):
            if min(w, h) // ratio < 224 and ratio > 1:
                continue  # downscaled below the model's input: the pipeline would not use it

            def decode(r: int = ratio, d: tf.Tensor = data) -> tf.Tensor:
                return tf.io.decode_jpeg(d, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")

            def both(r: int = ratio) -> tf.Tensor:
                img = tf.cast(decode(r), tf.float32)
                return tf.image.resize(img, (224, 224), method="bilinear", antialias=True)

            shape = tuple(int(d) for d in decode().shape)
            best = {}
            for name, fn in (("decode", decode), ("decode+resize", both)):
                fn().numpy()  # warm-up
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn().numpy()
                    times.append(time.perf_counter() - t0)
                best[name] = min(times)
            rows.append(
                {
                    "size": key,
                    "ratio": ratio,
                    "decoded_shape": list(shape),
                    "jpeg_bytes": len(raw),
                    "decode_ms": 1000 * best["decode"],
                    "decode_resize_ms": 1000 * best["decode+resize"],
                    "images_per_s_per_core": 1.0 / best["decode+resize"],
                }
            )
    aug = _augment_rate(tf, repeats)
    print(f"{'photo':>10s} {'ratio':>5s} {'decoded':>12s} {'decode ms':>10s} {'+resize ms':>11s} {'img/s/core':>11s}")
    for r in rows:
        dec = "x".join(str(d) for d in r["decoded_shape"][1::-1])
        print(
            f"{r['size']:>10s} {r['ratio']:>5d} {dec:>12s} {r['decode_ms']:>10.1f} {r['decode_resize_ms']:>11.1f} "
            f"{r['images_per_s_per_core']:>11.1f}"
        )
    if aug:
        print(f"augment only, from a cached 224x224 uint8 image (crop + flip + colour): {aug:.1f} images/s/core")
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).parent / "results" / ("decode.smoke.json" if args.smoke else "decode.json")
    )
    util.write_json(
        out,
        {
            "benchmark": "bench_decode: decode_jpeg(ratio) on one core",
            "repeats": repeats,
            "smoke": bool(args.smoke),
            "tensorflow": tf.__version__,
            "machine": mach,
            "rows": rows,
            "augment_from_cache_images_per_s_per_core": aug,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
