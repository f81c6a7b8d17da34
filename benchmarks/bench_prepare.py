"""Camera photos through a training epoch: from the original files, from ``--cache mem`` (its second
epoch) and from ``tlkit prepare``'s shards (issue 21).

Run: ``python benchmarks/bench_prepare.py [--photos 36] [--rounds 2] [--out PATH]``; ``--smoke`` runs
every row at a tiny size (figures mean nothing; written to ``benchmarks/results/prepare.smoke.json``).

The photos are skimage's sample photos (chelsea, astronaut, coffee, rocket) tiled and upscaled to a
12 MP camera size (4000x3000), saved as JPEG q90 (three classes). Each row is the images/s of one
epoch of tlkit's training pipeline (``make_dataset``: random resized crop to 224x224, flip, colour;
batch 32) without a model, i.e. what the input side can feed:

* ``files``: decoding the original JPEGs every epoch (at a DCT scale; EXIF orientation applied).
* ``--cache mem, epoch 2``: the resized uint8 images kept in memory after epoch 1.
* ``prepared shards``: the records ``tlkit prepare --size 256`` wrote (JPEG q90, shorter side 256).
* ``prepare (one-off)``: ``tlkit prepare`` itself (preflight, decode, resize, encode, write), once.

Rounds are interleaved and each row keeps its best (the machine is shared; its speed drifts).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _bench_util as util  # benchmarks/ is the script's folder, first on sys.path

FULL = {"size": (4000, 3000), "photos": 36, "side": 256, "input": 224, "batch": 32}
SMOKE = {"size": (320, 240), "photos": 9, "side": 64, "input": 32, "batch": 4}
ROWS = ("files", "--cache mem, epoch 2", "prepared shards", "prepare (one-off)")


def _epoch(ds: Any) -> int:
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every row runs")
    ap.add_argument("--photos", type=int, help="number of photos (default 36; smoke 9)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = dict(SMOKE if args.smoke else FULL)
    cfg["photos"] = args.photos or cfg["photos"]
    out = args.out or Path(__file__).parent / "results" / ("prepare.smoke.json" if args.smoke else "prepare.json")

    from tlkit.data import pipeline as tldata
    from tlkit.data import preflight
    from tlkit.data.prepare import prepare

    size = (cfg["input"], cfg["input"])
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        src, dest = Path(tmp) / "photos", Path(tmp) / "prepared"
        t = time.perf_counter()
        util.write_photos(src, cfg["photos"], cfg["size"], classes=3)
        print(f"wrote {cfg['photos']} photos of {cfg['size'][0]}x{cfg['size'][1]} in {time.perf_counter() - t:.0f} s")
        mb = sum(p.stat().st_size for p in src.rglob("*.jpg")) / 1e6

        def common() -> dict:
            return {"image_size": size, "batch_size": cfg["batch"], "training": True, "augment": "crop", "seed": 0}

        for r in range(args.rounds):
            t = time.perf_counter()
            m = prepare(str(src), str(dest), size=[cfg["side"]], val_split=0.0, force=True, say=lambda _m: None)
            rates = {"prepare (one-off)": m["images"] / (time.perf_counter() - t)}
            files = tldata.resolve(str(src), val_split=0.0)
            files = preflight.check(files, progress=False) and files
            ds = tldata.make_dataset(files, "train", **common())
            t = time.perf_counter()
            rates["files"] = _epoch(ds) / (time.perf_counter() - t)
            ds = tldata.make_dataset(files, "train", cache="mem", **common())
            _epoch(ds)
            t = time.perf_counter()
            rates["--cache mem, epoch 2"] = _epoch(ds) / (time.perf_counter() - t)
            prepared = tldata.resolve(str(dest))
            ds = tldata.make_dataset(prepared, "train", **common())
            _epoch(ds)  # the first epoch also opens the shards
            t = time.perf_counter()
            rates["prepared shards"] = _epoch(ds) / (time.perf_counter() - t)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
            for k, v in rates.items():
                best[k] = max(best.get(k, 0.0), v)
        shard_mb = sum(sh["bytes"] for e in m["splits"].values() for sh in e["shards"]) / 1e6

    base = best["files"]
    rows = [
        {"row": k, "images_per_s": round(best[k], 2), "vs_files": round(best[k] / base, 2) if k != "files" else 1.0}
        for k in ROWS
    ]
    mach = util.machine()
    print(f"CPU: {mach['cpu']}, {mach['cores']} cores (shared machine: figures drift)")
    print(
        f"{cfg['photos']} JPEG q90 photos {cfg['size'][0]}x{cfg['size'][1]} ({mb:.1f} MB) -> shards {shard_mb:.1f} MB"
    )
    title = f"epoch of make_dataset (crop {size[0]}, batch {cfg['batch']})"
    print(f"{title:44s} {'images/s':>10s} {'x files':>8s}")
    for row in rows:
        print(f"{row['row']:44s} {row['images_per_s']:>10.1f} {row['vs_files']:>8.2f}")
    util.write_json(
        out,
        {
            "smoke": args.smoke,
            "machine": mach,
            "photos": {"count": cfg["photos"], "size": list(cfg["size"]), "megabytes": round(mb, 2)},
            "prepared": {"side": cfg["side"], "quality": 90, "megabytes": round(shard_mb, 2)},
            "input_size": list(size),
            "batch": cfg["batch"],
            "rounds": args.rounds,
            "rows": rows,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
