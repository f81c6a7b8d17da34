"""The image path from file to tensor, measured against the network it feeds (issue 13).

Run: ``python benchmarks/bench_data.py [--rounds 3] [--out PATH]``; ``--smoke`` runs every row at tiny
sizes (CI; figures mean nothing, written to ``benchmarks/results/data.smoke.json``).

For two photo sizes (500x375 and 3000x2250 JPEG q90, generated from skimage's sample photos,
two classes), EfficientNet-Lite0 at 224x224, batch 32, on this machine's CPU:

* ``network``: ``predict_on_batch`` on ready float32 tensors (no files).
* ``decode``: tlkit's tf.data pipeline (``resolve`` + ``make_dataset``, no augmentation) without the model.
* ``serial bound``: 1 / (1/decode + 1/network), what the two reach if they share the cores one after the other.
* ``extract``: ``tlkit.features.extract.extract`` (what ``tlkit extract`` runs): its own steady rate,
  and end to end (model build and preflight included), on a first run (preflight's remembered checks
  of these files deleted first) and a second run (checks remembered).
* ``finetune``: one epoch of stage 1 (head only) and stage 2 (top 2 blocks unfrozen) read from the files
  through tlkit's training pipeline (random crop + flip + colour), against ``model.fit`` on the same
  images already decoded and resized in memory; with ``--cache`` (uint8 images after resize) when
  ``tlkit finetune --help`` has it (else the row says n/a).
* ``evaluate``: ``tlkit.finetune.evaluation_runs.evaluate_runs`` on every file (a run made once by
  ``tlkit finetune --epochs 1``); ``predict``: ``tlkit predict``'s ``predict_files``.
* ``serve``: SavedModels exported once with ``tlkit export --base efficientnet_lite0`` (``--resize crop``,
  the default for a base, and ``--resize plain``, the default for a run), loaded with
  ``tf.saved_model.load``: ``serving_default`` (JPEG bytes of these photos) vs ``predict_pixels``
  (224x224 float32), batch 1 and 32 (``--smoke``: its batch of 4 stands in for 32). ``plain``
  decodes large JPEGs at a DCT scale; ``crop`` decodes them in full (see tlkit.data.decode.serving_need).

Each row is images/s and its ratio to the row it is bounded by (``bound``); ``vs_network`` is the ratio
to the network-only rate. Rounds are interleaved (each round measures every row of both sizes once)
and each row keeps its best: this machine's speed drifts from minute to minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import _bench_util as util  # benchmarks/ is the script's folder, first on sys.path

BASE = "efficientnet_lite0"
FULL = {"sizes": {"500x375": (500, 375, 384), "3000x2250": (3000, 2250, 96)}, "batch": 32, "fit_images": 192}
SMOKE = {"sizes": {"100x75": (100, 75, 8), "640x480": (640, 480, 8)}, "batch": 4, "fit_images": 8}
# row -> the row it is bounded by (None: a reference rate)
BOUNDS = {
    "network (predict_on_batch, ready tensors)": None,
    "decode + resize (tf.data, no model)": None,
    "serial bound 1/(1/decode + 1/network)": "network (predict_on_batch, ready tensors)",
    "extract steady, 1st run": "serial bound 1/(1/decode + 1/network)",
    "extract end to end, 1st run": "serial bound 1/(1/decode + 1/network)",
    "extract steady, 2nd run": "serial bound 1/(1/decode + 1/network)",
    "extract end to end, 2nd run": "serial bound 1/(1/decode + 1/network)",
    "fit stage 1 in memory": None,
    "finetune stage 1 from files": "fit stage 1 in memory",
    "finetune stage 1 from files, --cache (epoch 2)": "fit stage 1 in memory",
    "fit stage 2 in memory": None,
    "finetune stage 2 from files": "fit stage 2 in memory",
    "finetune stage 2 from files, --cache (epoch 2)": "fit stage 2 in memory",
    "evaluate (end to end)": "serial bound 1/(1/decode + 1/network)",
    "predict (end to end)": "serial bound 1/(1/decode + 1/network)",
    "serve pixels, batch 1": None,
    "serve bytes, batch 1": "serve pixels, batch 1",
    "serve bytes plain, batch 1": "serve pixels, batch 1",
    "serve pixels, batch 32": None,
    "serve bytes, batch 32": "serve pixels, batch 32",
    "serve bytes plain, batch 32": "serve pixels, batch 32",
}
NETWORK, DECODE, SERIAL = list(BOUNDS)[:3]
SHORT = {
    NETWORK: "network",
    SERIAL: "serial",
    "fit stage 1 in memory": "fit1 mem",
    "fit stage 2 in memory": "fit2 mem",
    "serve pixels, batch 1": "pix b1",
    "serve pixels, batch 32": "pix b32",
}


PHASES: dict[str, float] = {}  # seconds each part of the benchmark took (all rounds), to plan a run's length


def _phase(name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        PHASES[name] = round(PHASES.get(name, 0.0) + time.perf_counter() - t0, 2)


def _rate(n: int, fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _tlkit(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m tlkit ARGV`` in a fresh process (the tree this script belongs to comes first)."""
    root = str(Path(__file__).resolve().parents[1])
    e = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    return subprocess.run([sys.executable, "-m", "tlkit", *argv], capture_output=True, text=True, env=e, check=False)


def cache_flag(help_text: str | None = None) -> list[str] | None:
    """The ``--cache`` arguments of ``tlkit finetune`` (memory cache) if its help lists the flag, else None.

    ``help_text`` is ``tlkit finetune --help``'s output (asked for when not given). ``--cache``
    alone, ``--cache MODE``, ``--cache mem|DIR`` and ``--cache {memory,disk,...}`` are understood; ``--cache-features``
    is another flag.
    """
    text = _tlkit("finetune", "--help").stdout if help_text is None else help_text
    m = re.search(r"--cache(?![-\w])(?:[ =](\{[^}]*\}|[\w|]+))?", text)
    if not m:
        return None
    arg = m.group(1)
    if not arg:
        return ["--cache"]
    if arg.startswith("{"):
        choices = [c.strip() for c in arg.strip("{}").split(",")]
        pick = "memory" if "memory" in choices else next((c for c in choices if c not in ("none", "off")), choices[0])
        return ["--cache", pick]
    if "mem" in arg.split("|"):  # tlkit's form: --cache mem|DIR
        return ["--cache", "mem"]
    return ["--cache", "memory"]


class Size:
    """One photo size: its folder, its files, and the models and arrays its rows reuse across rounds."""

    def __init__(self, key: str, folder: Path, paths: list[Path], batch: int, fit_images: int) -> None:
        self.key, self.folder, self.paths, self.batch = key, folder, paths, batch
        self.n = len(paths)
        self.fit_n = min(fit_images, self.n) // 2 * 2
        self.state: dict[str, Any] = {}


def _decoded(src: Any, batch: int) -> tuple[Any, Any]:
    """Every image of ``src`` decoded and resized by tlkit's pipeline, as numpy (uint8-valued float32)."""
    import numpy as np

    from tlkit.data import pipeline as tldata

    ds = tldata.make_dataset(src, "train", image_size=(224, 224), batch_size=batch, training=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def measure_network(size: Size) -> float:
    import numpy as np

    import tlkit

    if "net" not in size.state:
        size.state["net"] = tlkit.build(BASE, weights=None)
        rng = np.random.default_rng(0)
        size.state["net_x"] = rng.uniform(0, 255, (size.batch, 224, 224, 3)).astype("float32")
        size.state["net"].predict_on_batch(size.state["net_x"])  # trace once
    model, x = size.state["net"], size.state["net_x"]
    steps = -(-size.n // size.batch)
    return _rate(steps * size.batch, lambda: [np.asarray(model.predict_on_batch(x)) for _ in range(steps)])


def measure_decode(size: Size) -> float:
    """Iterating tlkit's evaluation pipeline (decode + resize, batched), the dataset built once."""
    from tlkit.data import pipeline as tldata

    if "decode_ds" not in size.state:
        src = tldata.resolve(str(size.folder), val_split=0.0)
        size.state["decode_ds"] = tldata.make_dataset(
            src, "train", image_size=(224, 224), batch_size=size.batch, training=False
        )
    ds = size.state["decode_ds"]
    return _rate(size.n, lambda: [None for _ in ds])


def measure_extract(size: Size, out: Path) -> dict[str, float]:
    """Steady and end-to-end rates of a first run (no remembered checks) and a second run."""
    from tlkit.data.file_checks import CheckCache, source_key
    from tlkit.features.extract import extract

    CheckCache(source_key(str(size.folder))).path.unlink(missing_ok=True)
    rates = {}
    for run in ("1st", "2nd"):
        t0 = time.perf_counter()
        res = extract(BASE, ["avg_pool"], str(size.folder), out, batch_size=size.batch, force=True, progress=False)
        wall = time.perf_counter() - t0
        rates[f"extract end to end, {run} run"] = res.rows / wall
        rates[f"extract steady, {run} run"] = res.images_per_second
    return rates


def measure_finetune(size: Size, cached: bool = False) -> dict[str, float]:
    """Stage 1 and 2 epochs from files (tlkit's training pipeline) and on the same images in memory.

    With ``cached``, also an epoch of the same pipeline with ``cache="mem"`` (``--cache mem``) once
    its cache is full: the images come from memory as uint8, augmentation still runs per epoch.
    """
    from tlkit.data import pipeline as tldata
    from tlkit.finetune import heads, train

    st = size.state
    if "fit" not in st:
        src = tldata.resolve(str(size.folder), val_split=0.0)
        # fit_n images, both classes alike; the in-memory copy holds exactly these images.
        src.items = src.items.groupby("label").head(size.fit_n // 2).reset_index(drop=True)
        x, y = _decoded(src, size.batch)
        models = {}
        for stage in (1, 2):
            m = heads.build_classifier(BASE, num_classes=2, weights=None, input_size=(224, 224))
            if stage == 2:
                heads.unfreeze_top(m, 2)
            train.compile_model(m, train.StageConfig(stage=stage, epochs=1, lr=1e-3 if stage == 1 else 1e-4), 2)
            m.fit(x[: size.batch], y[: size.batch], batch_size=size.batch, epochs=1, verbose=0)  # compile
            models[stage] = m
        ds = tldata.make_dataset(src, "train", image_size=(224, 224), batch_size=size.batch, training=True)
        for m in models.values():
            m.fit(ds.take(1), epochs=1, verbose=0)  # trace the dataset's train step
        cds = None
        if cached:
            cds = tldata.make_dataset(
                src,
                "train",
                image_size=(224, 224),
                batch_size=size.batch,
                training=True,
                cache="mem",
                cache_budget="16GiB",
            )
            for _ in cds:  # epoch 1 fills the cache; the timed epochs read it
                pass
        st["fit"] = (models, ds, x, y, cds)
    models, ds, x, y, cds = st["fit"]
    rates = {}
    for stage, m in models.items():  # files and memory alternate: both see the same machine load
        rates[f"finetune stage {stage} from files"] = _rate(size.fit_n, lambda m=m: m.fit(ds, epochs=1, verbose=0))
        if cds is not None:
            rates[f"finetune stage {stage} from files, --cache (epoch 2)"] = _rate(
                size.fit_n, lambda m=m: m.fit(cds, epochs=1, verbose=0)
            )
        rates[f"fit stage {stage} in memory"] = _rate(
            size.fit_n, lambda m=m: m.fit(x, y, batch_size=size.batch, epochs=1, verbose=0, shuffle=False)
        )
    return rates


def measure_evaluate_predict(size: Size, work: Path) -> dict[str, float]:
    from tlkit.cli.commands.predict import predict_files
    from tlkit.finetune.evaluation_runs import evaluate_runs

    run = work / "runs" / "eval"  # one run (on the first size's photos) serves every size: same classes
    if not run.exists():
        p = _tlkit(
            "finetune",
            "--data",
            str(size.folder),
            "--runs-dir",
            str(run.parent),
            "--name",
            "eval",
            "--epochs",
            "1",
            "--finetune-epochs",
            "0",
            "--weights",
            "none",
            "--batch-size",
            str(size.batch),
            "--quiet",
        )
        if p.returncode != 0:
            raise RuntimeError(f"tlkit finetune (the run to evaluate) failed: {p.stderr[-800:]}")
    paths = [str(p) for p in size.paths]
    return {
        "evaluate (end to end)": _rate(
            size.n, lambda: evaluate_runs([str(run)], data=str(size.folder), split="all", batch_size=size.batch)
        ),
        "predict (end to end)": _rate(size.n, lambda: predict_files(paths, batch_size=size.batch)),
    }


def export_model(work: Path) -> Any:
    """Version 1 resizes with ``crop`` (the default of ``--base``), version 2 with ``plain`` (a run's default)."""
    import tensorflow as tf

    loaded = []
    for version, resize in (("1", "crop"), ("2", "plain")):
        if not (work / "saved" / version / "saved_model.pb").exists():  # else --keep: exported by an earlier run
            p = _tlkit(
                "export",
                "--base",
                BASE,
                "--out",
                str(work / "saved"),
                "--version",
                version,
                "--resize",
                resize,
                "--quiet",
            )
            if p.returncode != 0:
                raise RuntimeError(f"tlkit export failed: {p.stderr[-800:]}")
        loaded.append(tf.saved_model.load(str(work / "saved" / version)))
    return loaded


def measure_serving(size: Size, loaded: Any, tries: int) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf

    crop, plain = loaded
    serve, pixels_fn = crop.signatures["serving_default"], crop.signatures["predict_pixels"]
    serve_plain = plain.signatures["serving_default"]
    rng = np.random.default_rng(0)
    photos = [p.read_bytes() for p in size.paths]
    rates = {}
    for b in (1, size.batch):
        jpegs = tf.constant([photos[i % len(photos)] for i in range(b)])
        pix = tf.constant(rng.uniform(0, 255, (b, 224, 224, 3)).astype("float32"))
        label = 32 if b == size.batch and b != 1 else b  # smoke's small batch stands in for 32
        for kind, call in (
            ("pixels", lambda pix=pix: pixels_fn(pixels=pix)["scores"].numpy()),
            ("bytes", lambda jpegs=jpegs: serve(image_bytes=jpegs)["scores"].numpy()),
            ("bytes plain", lambda jpegs=jpegs: serve_plain(image_bytes=jpegs)["scores"].numpy()),
        ):
            call()  # warm-up (first call traces)
            rates[f"serve {kind}, batch {label}"] = max(_rate(b, call) for _ in range(tries))
    return rates


def measure_round(size: Size, work: Path, loaded: Any, *, smoke: bool) -> dict[str, float]:
    """Every row of one photo size once (the cached finetune aside), with each part's time noted."""
    got = {
        NETWORK: _phase("network", lambda: measure_network(size)),
        DECODE: _phase("decode", lambda: measure_decode(size)),
    }
    got.update(_phase("extract", lambda: measure_extract(size, work / f"features-{size.key}.npz")))
    got.update(_phase("finetune", lambda: measure_finetune(size, cached=cache_flag() is not None)))
    got.update(_phase("evaluate+predict", lambda: measure_evaluate_predict(size, work)))
    got.update(_phase("serve", lambda: measure_serving(size, loaded, tries=2 if smoke else 3)))
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, help="interleaved rounds, each row keeps its best (default 3; smoke 1)")
    ap.add_argument("--smoke", action="store_true", help="every row at tiny sizes (CI); figures mean nothing")
    ap.add_argument("--out", help="JSON path (default results/data.json; --smoke: results/data.smoke.json)")
    ap.add_argument("--keep", help="write the photos and runs here (kept) instead of a temporary folder")
    args = ap.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    rounds = args.rounds or (1 if args.smoke else 3)
    results = Path(__file__).parent / "results"
    out = Path(args.out) if args.out else results / ("data.smoke.json" if args.smoke else "data.json")
    mach = util.machine()
    print(
        f"CPU: {mach['cpu']}, {mach['cores']} cores; {rounds} interleaved round(s), best kept"
        + ("  [smoke: figures mean nothing]" if args.smoke else "")
    )
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlkit-bench-data-") as tmp:
        work = Path(args.keep or tmp)
        sizes = []
        for key, (w, h, n) in cfg["sizes"].items():
            folder = work / f"photos-{key}"
            paths = (
                sorted(folder.rglob("*.jpg"))
                if folder.exists()
                else _phase("photos", lambda f=folder, n=n, wh=(w, h): util.write_photos(f, n, wh))
            )
            sizes.append(Size(key, folder, paths, cfg["batch"], cfg["fit_images"]))
            print(
                f"{key}: {len(paths)} JPEGs q90, {sum(p.stat().st_size for p in paths) / len(paths) / 1e3:.0f} "
                f"kB each on average"
            )
        flag = cache_flag()
        loaded = _phase("export", lambda: export_model(work))
        best: dict[tuple[str, str], float] = {}
        status: dict[tuple[str, str], str] = {}
        for r in range(rounds):
            for size in sizes:
                got = measure_round(size, work, loaded, smoke=args.smoke)
                for name, v in got.items():
                    best[(size.key, name)] = max(best.get((size.key, name), 0.0), v)
            print(f"round {r + 1}/{rounds} done at {time.perf_counter() - t_start:.0f} s", flush=True)
        if not args.keep:  # the preflight's remembered checks of the temporary photos go with them
            from tlkit.data.file_checks import CheckCache, source_key

            for size in sizes:
                CheckCache(source_key(str(size.folder))).path.unlink(missing_ok=True)

    rows = []
    for size in sizes:
        net = best[(size.key, NETWORK)]
        best[(size.key, SERIAL)] = 1.0 / (1.0 / best[(size.key, DECODE)] + 1.0 / net)
        for name, bound in BOUNDS.items():
            rate = best.get((size.key, name))
            st = status.get((size.key, name), "ok" if rate is not None else "n/a (not implemented)")
            b = best.get((size.key, bound)) if bound else None
            rows.append(
                {
                    "size": size.key,
                    "row": name,
                    "images_per_s": rate,
                    "status": st,
                    "bound": bound,
                    "bound_images_per_s": b,
                    "ratio": rate / b if rate and b else None,
                    "vs_network": rate / net if rate else None,
                }
            )
    util.print_table(rows, [s.key for s in sizes], SHORT)
    result = {
        "benchmark": "bench_data: the image path from file to tensor (issue 13)",
        "base": BASE,
        "input_size": [224, 224],
        "batch": cfg["batch"],
        "rounds": rounds,
        "smoke": bool(args.smoke),
        "photos": {s.key: {"count": s.n, "fit_images": s.fit_n, "jpeg_quality": 90} for s in sizes},
        "cache_flag": flag,
        "machine": mach,
        "seconds": round(time.perf_counter() - t_start, 1),
        "phase_seconds": PHASES,
        "rows": rows,
    }
    util.write_json(out, result)
    print(f"wrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
