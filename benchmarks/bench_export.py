"""Latency of an exported SavedModel (EfficientNet-Lite0) as loaded for serving, on this machine.

Run: ``.venv/bin/python benchmarks/bench_export.py [--path EXPORT] [--repeats N]``. Without
``--path`` it exports ``--base efficientnet_lite0`` (verified) into a temporary directory
first. The model is then loaded with plain ``tf.saved_model.load`` and each signature is
called at batch 1 and batch 32: ``serving_default`` with JPEG bytes (decode + resize in the
graph) and ``predict_pixels`` with 224x224 float32 pixels. Times are medians (and 90th
percentiles) over ``--repeats`` calls after warm-up calls, the result fetched to numpy.
Writes ``benchmarks/results/export.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import call_times  # noqa: E402


def _photos(n: int) -> list[bytes]:
    """``n`` JPEGs of real photos at their own sizes (skimage samples, cycled)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    sources = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket(), data.cat()]
    out = []
    for i in range(n):
        rgb = np.ascontiguousarray(sources[i % len(sources)])
        if i >= len(sources):  # vary the content a little so no two requests are identical
            rgb = np.ascontiguousarray(rgb[: rgb.shape[0] - i, : rgb.shape[1] - i])
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _time(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, Any]:
    runs = call_times(fn, warmup, repeats)
    runs_sorted = sorted(runs)
    p90 = runs_sorted[min(len(runs) - 1, int(round(0.9 * (len(runs) - 1))))]
    return {
        "median_ms": 1000 * statistics.median(runs),
        "p90_ms": 1000 * p90,
        "min_ms": 1000 * min(runs),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="an existing export (version directory); default: export one now")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    export_s = None
    with tempfile.TemporaryDirectory(prefix="tlkit-bench-export-") as scratch:
        path = args.path
        if path is None:
            from tlkit.export import savedmodel as export

            t = time.perf_counter()
            result = export.export_base("efficientnet_lite0", Path(scratch) / "efficientnet_lite0")
            export_s = time.perf_counter() - t
            path = str(result.path)
            print(f"exported and verified {path} in {export_s:.1f} s")
        card = json.loads((Path(path) / "tlkit.json").read_text())
        t = time.perf_counter()
        model = tf.saved_model.load(path)
        load_s = time.perf_counter() - t
        serve = model.signatures["serving_default"]
        pixels_fn = model.signatures["predict_pixels"]
        h, w = card["input_size"]
        photos = _photos(32)
        rng = np.random.default_rng(0)
        inputs = {
            ("serving_default", 1): tf.constant(photos[:1]),
            ("serving_default", 32): tf.constant(photos),
            ("predict_pixels", 1): tf.constant(rng.uniform(0, 255, (1, h, w, 3)).astype("float32")),
            ("predict_pixels", 32): tf.constant(rng.uniform(0, 255, (32, h, w, 3)).astype("float32")),
        }
        rows = []
        for (sig, batch), x in inputs.items():
            fn = serve if sig == "serving_default" else pixels_fn
            key = "image_bytes" if sig == "serving_default" else "pixels"
            repeats = args.repeats if batch == 1 else max(3, args.repeats // 2)
            r = _time(lambda fn=fn, key=key, x=x: fn(**{key: x})["scores"].numpy(), args.warmup, repeats)
            r.update(
                {
                    "signature": sig,
                    "batch": batch,
                    "images_per_s": batch / (r["median_ms"] / 1000),
                    "input_bytes_mean": int(np.mean([len(p) for p in photos[:batch]]))
                    if sig == "serving_default"
                    else None,
                }
            )
            rows.append(r)
        top = serve(image_bytes=tf.constant(photos[:1]))["top_k_labels"].numpy()[0][0].decode()

    result = {
        "benchmark": "loaded SavedModel latency: efficientnet_lite0 export, serving_default (JPEG bytes) "
        "and predict_pixels, batch 1 and 32",
        "export_path": args.path or "(temporary export)",
        "export_and_verify_s": export_s,
        "load_s": load_s,
        "input_size": [h, w],
        "num_classes": card["num_classes"],
        "top1_of_chelsea": top,
        "results": rows,
        "environment": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        },
    }
    print(f"load {load_s:.2f} s; chelsea top-1: {top}")
    print(f"{'signature':<17}{'batch':>6}{'median ms':>11}{'p90 ms':>9}{'ms/image':>10}{'images/s':>10}")
    for r in rows:
        print(
            f"{r['signature']:<17}{r['batch']:>6}{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}"
            f"{r['median_ms'] / r['batch']:>10.1f}{r['images_per_s']:>10.1f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
