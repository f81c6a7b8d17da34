"""Every deployable format of one finetuned model on this CPU: latency, throughput, size, held-out accuracy.

Run: ``python benchmarks/bench_deploy.py [--rounds 3] [--repeats 30] [--data builtin:faces]``;
``--tiny`` runs every step at toy sizes (CI: a from-scratch ``cifar_example`` at 32x32, one epoch,
exported without the export's own checks; its figures mean nothing and go to a temporary file
unless ``--out``).

The model: EfficientNet-Lite0 at 224x224 finetuned with ``tlkit finetune`` (``--epochs`` head
epochs, then ``--finetune-epochs`` with the top blocks unfrozen) on ``--data``: by default
``builtin:faces``, scikit-image's 200 LFW photos (faces / non-faces, 25x25 grayscale, resized by
the pipeline), small enough to finetune in minutes and hard enough that held-out accuracy is
not 1.0. The run is kept under ``--work`` (default: a folder in the system's temp directory) and
reused when its settings match. It is then exported once with ``--format tflite --format onnx``
(verified, as ``tlkit export`` does) into a fresh folder, so every ``.tflite`` file the export
writes (``card["tflite"]["models"]``) is measured, whatever variants it has.

Rows, all fed the same float32 RGB 0..255 pixels at 224x224 (decoding and resizing are the
client's in every format but the SavedModel's ``serving_default``, so the comparison is of
the model runtimes):

* ``saved_model``: ``tf.saved_model.load`` and its ``predict_pixels`` signature (the reference);
* ``tflite <variant>``: each ``.tflite`` file in the LiteRT interpreter
  (``ai_edge_litert.interpreter.Interpreter``, else ``tf.lite.Interpreter``), one interpreter per
  batch size, resized once; a model whose input is not float32 (full-integer int8 with uint8
  input) gets its pixels quantised with the input tensor's scale and zero point, and integer
  scores are dequantised with the output's;
* ``onnx``: ``onnx/model.onnx`` in an ``onnxruntime.InferenceSession`` (CPU).

Each engine uses every core this process may use (TensorFlow's default, LiteRT ``num_threads``,
ONNX Runtime ``intra_op_num_threads``). Per round, batch-1 latency is the median of
``--repeats`` calls and batch-32 throughput the median of ``max(3, repeats // 3)`` calls, after
warm-up calls; rounds are interleaved (every engine once per round) and each measure keeps its
best round. Ratios are images/s of the row over the SavedModel's, same batch, same run (>1:
faster). Size is the bytes on disk (the SavedModel: its whole directory but tlkit.json). Accuracy
is top-1 on the run's held-out validation split, read as ``tlkit evaluate`` reads it, with the
row's top-1 agreement with the SavedModel. Writes ``benchmarks/results/deploy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import call_times, machine, write_json  # noqa: E402

SAVED_MODEL_PARTS = ("saved_model.pb", "fingerprint.pb", "variables", "assets")  # what TF Serving loads
RESULTS = Path(__file__).resolve().parent / "results"
FULL = {
    "base": ["--base", "efficientnet_lite0", "--input-size", "224", "224"],
    "epochs": 3,
    "finetune_epochs": 2,
    "repeats": 30,
    "rounds": 3,
    "warmup": 3,
    "big_batch": 32,
}
# Toy sizes: every step runs (finetune, export with verification, each engine, accuracy) in about a minute.
TINY = {
    "base": ["--base", "cifar_example", "--weights", "none", "--input-size", "32", "32", "--batch-size", "8"],
    "epochs": 1,
    "finetune_epochs": 0,
    "repeats": 3,
    "rounds": 1,
    "warmup": 1,
    "big_batch": 8,  # stands in for 32
}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def finetune(work: Path, data: str, cfg: dict[str, Any], epochs: int, finetune_epochs: int) -> Path:
    """The run directory, made by ``tlkit finetune`` unless one with the same settings is there."""
    args = [*cfg["base"], "--data", data, "--epochs", str(epochs), "--finetune-epochs", str(finetune_epochs)]
    args += ["--seed", "0"]
    run = work / "runs" / "deploy"
    key = work / "runs" / "deploy.args.json"
    if (run / "metrics.json").is_file() and key.is_file() and json.loads(key.read_text()) == args:
        print(f"reusing the run {run} (same settings)")
        return run
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, "-m", "tlkit", "finetune", *args, "--runs-dir", str(run.parent), "--name", run.name]
    cmd += ["--quiet", "--force"]
    print("finetuning:", " ".join(cmd[3:]))
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if p.returncode != 0:
        sys.exit(f"tlkit finetune failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    print(f"finetuned in {time.perf_counter() - t:.0f} s")
    key.write_text(json.dumps(args))
    return run


def held_out(run: Path, size: tuple[int, int]) -> tuple[Any, Any, str]:
    """The run's validation images (float32 pixels, resized as its evaluation fed them) and labels."""
    import numpy as np

    from tlkit.data import pipeline as tldata

    config = json.loads((run / "config.json").read_text())
    source = tldata.resolve(
        config["data"], val_split=config.get("val_split", 0.2), seed=config.get("seed", 0), min_classes=1
    )
    ds = tldata.make_dataset(source, "val", image_size=size, batch_size=32, training=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys), f"{config['data']} (val)"


def _interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT not installed: TensorFlow's own (deprecated) copy
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path), num_threads=threads)


class LiteRT:
    """One ``.tflite`` file: an interpreter per batch size, pixels quantised if its input is an integer type."""

    def __init__(self, path: Path, threads: int, num_classes: int) -> None:
        self.path, self.threads, self.num_classes = path, threads, num_classes
        self._by_batch: dict[int, tuple[Any, dict, dict]] = {}
        interp, inp, out = self._make(1)
        self.input_dtype = inp["dtype"].__name__
        self.input_quantization = [float(v) for v in inp["quantization"]]
        self.output_dtype = out["dtype"].__name__

    def _make(self, batch: int) -> tuple[Any, dict, dict]:
        if batch not in self._by_batch:
            interp = _interpreter(self.path, self.threads)
            # Tensor indices by signature name, without a SignatureRunner: one holds the interpreter's
            # buffers, and resize_tensor_input refuses to run while anything does.
            sig = next(iter(interp._get_full_signature_list().values()))  # predict_pixels: the only one
            details = {d["index"]: d for d in [*interp.get_input_details(), *interp.get_output_details()]}
            inp = details[next(iter(sig["inputs"].values()))]
            outs = {name: details[i] for name, i in sig["outputs"].items()}
            out = outs.get("scores") or next(o for o in outs.values() if o["shape"][-1] == self.num_classes)
            interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
            interp.allocate_tensors()
            self._by_batch[batch] = (interp, inp, out)
        return self._by_batch[batch]

    def prepare(self, pixels: Any) -> Any:
        """Pixels as the model's input tensor wants them (float32 as is; integer types quantised)."""
        import numpy as np

        _, inp, _ = self._make(len(pixels))
        dtype = inp["dtype"]
        if dtype == np.float32:
            return pixels.astype(np.float32)
        scale, zero = inp["quantization"]
        info = np.iinfo(dtype)
        q = np.round(pixels / (scale or 1.0) + zero)
        return np.clip(q, info.min, info.max).astype(dtype)

    def run(self, x: Any) -> Any:
        import numpy as np

        interp, inp, out = self._make(len(x))
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if y.dtype != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


def engines(export_dir: Path, card: dict[str, Any], threads: int) -> dict[str, dict[str, Any]]:
    """name -> {"prepare": pixels -> input, "run": input -> float32 scores, "files": [...], ...}."""
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    found: dict[str, dict[str, Any]] = {}
    fn = tf.saved_model.load(str(export_dir)).signatures["predict_pixels"]
    sm_files = [
        p for p in export_dir.rglob("*") if p.is_file() and p.relative_to(export_dir).parts[0] in SAVED_MODEL_PARTS
    ]
    found["saved_model"] = {
        "prepare": lambda px: tf.constant(px, tf.float32),
        "run": lambda x: fn(pixels=x)["scores"].numpy(),
        "bytes": sum(p.stat().st_size for p in sm_files),
        "file": "saved_model.pb + variables/ (predict_pixels)",
    }
    for variant, entry in (card.get("tflite") or {}).get("models", {}).items():
        lite = LiteRT(export_dir / entry["file"], threads, card["num_classes"])
        found[f"tflite {variant}"] = {
            "prepare": lite.prepare,
            "run": lite.run,
            "bytes": (export_dir / entry["file"]).stat().st_size,
            "file": entry["file"],
            "input": f"{lite.input_dtype} {lite.input_quantization if lite.input_dtype != 'float32' else ''}".strip(),
            "output": lite.output_dtype,
        }
    onnx = card.get("onnx")
    if onnx:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(export_dir / onnx["file"]), opts, providers=["CPUExecutionProvider"])
        found["onnx"] = {
            "prepare": lambda px: np.ascontiguousarray(px, np.float32),
            "run": lambda x: sess.run(["scores"], {"pixels": x})[0],
            "bytes": (export_dir / onnx["file"]).stat().st_size,
            "file": f"{onnx['file']} (opset {onnx['opset']}, onnxruntime {ort.__version__})",
        }
    return found


def _median_s(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    return statistics.median(call_times(fn, warmup, repeats))


def all_scores(eng: dict[str, Any], pixels: Any, batch: int) -> Any:
    """The engine's float32 scores for every image of ``pixels``, ``batch`` at a time."""
    import numpy as np

    return np.concatenate([eng["run"](eng["prepare"](pixels[i : i + batch])) for i in range(0, len(pixels), batch)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:faces", help="what to finetune on (any tlkit --data)")
    ap.add_argument("--epochs", type=int, help="head epochs (default 3; tiny 1)")
    ap.add_argument("--finetune-epochs", type=int, help="epochs with the top blocks unfrozen (default 2; tiny 0)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds, each measure keeps its best (default 3)")
    ap.add_argument("--repeats", type=int, help="timed batch-1 calls per round (default 30)")
    ap.add_argument("--work", help="where the run is kept between invocations (default: TMPDIR/tlkit-bench-deploy)")
    ap.add_argument("--tiny", action="store_true", help="every step at toy sizes (CI); figures mean nothing")
    ap.add_argument("--out", help="JSON path (default results/deploy.json; --tiny: a temporary file)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TLKIT_OFFLINE", "1")
    cfg = TINY if args.tiny else FULL
    epochs = cfg["epochs"] if args.epochs is None else args.epochs
    ft_epochs = cfg["finetune_epochs"] if args.finetune_epochs is None else args.finetune_epochs
    rounds, repeats = args.rounds or cfg["rounds"], args.repeats or cfg["repeats"]
    warmup, big = cfg["warmup"], cfg["big_batch"]
    work = Path(args.work or Path(tempfile.gettempdir()) / ("tlkit-bench-deploy" + ("-tiny" if args.tiny else "")))
    if args.out:
        out = Path(args.out)
    elif args.tiny:
        out = Path(tempfile.mkdtemp(prefix="tlkit-bench-deploy-")) / "deploy.tiny.json"
    else:
        out = RESULTS / "deploy.json"
    info = machine()
    threads = cores()
    print(f"CPU: {info['cpu']}, {info['cores']} cores" + ("  [tiny: figures mean nothing]" if args.tiny else ""))

    phase: dict[str, float] = {}
    t = time.perf_counter()
    run = finetune(work, args.data, cfg, epochs, ft_epochs)
    phase["finetune"] = time.perf_counter() - t

    t = time.perf_counter()
    from tlkit.export import savedmodel as export

    models = work / "models"
    shutil.rmtree(models, ignore_errors=True)  # a fresh export: the variants this tlkit writes
    # --tiny skips the export's own checks (tested elsewhere; they would be most of its minute)
    result = export.export_run(run, models / "deploy", formats=("saved_model", "tflite", "onnx"), verify=not args.tiny)
    export_dir, card = Path(result.path), result.card
    phase["export_and_verify"] = time.perf_counter() - t
    done = "exported" if args.tiny else "exported and verified"
    print(f"{done} {export_dir} in {phase['export_and_verify']:.0f} s")

    import numpy as np

    h, w = card["input_size"]
    pixels, labels, held_source = held_out(run, (h, w))
    found = engines(export_dir, card, threads)
    if len(pixels) == 0:
        sys.exit(f"the run {run} has no held-out images to measure accuracy on; give --data with more images")
    batch_px = {1: pixels[:1], big: pixels[np.arange(big) % len(pixels)]}
    inputs = {(name, b): eng["prepare"](px) for name, eng in found.items() for b, px in batch_px.items()}

    t = time.perf_counter()
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for name, eng in found.items():
            for b in (1, big):
                x = inputs[(name, b)]
                n = repeats if b == 1 else max(3, repeats // 3)
                s = _median_s(lambda eng=eng, x=x: eng["run"](x), warmup, n)
                best[(name, b)] = min(best.get((name, b), float("inf")), s)
    phase["timing"] = time.perf_counter() - t

    t = time.perf_counter()
    scores = {name: all_scores(eng, pixels, big) for name, eng in found.items()}
    phase["accuracy"] = time.perf_counter() - t
    ref_top1 = scores["saved_model"].argmax(1)
    rows = []
    for name, eng in found.items():
        top1 = scores[name].argmax(1)
        ips = {b: b / best[(name, b)] for b in (1, big)}
        ref = {b: b / best[("saved_model", b)] for b in (1, big)}
        rows.append(
            {
                "format": name,
                "file": eng["file"],
                "bytes": eng["bytes"],
                "input": eng.get("input", "float32"),
                "batch1_median_ms": 1000 * best[(name, 1)],
                "batch1_images_per_s": ips[1],
                "batch1_ratio": ips[1] / ref[1],
                f"batch{big}_images_per_s": ips[big],
                f"batch{big}_ratio": ips[big] / ref[big],
                "top1_accuracy": float((top1 == labels).mean()),
                "top1_agreement_with_saved_model": float((top1 == ref_top1).mean()),
                "max_abs_score_diff_vs_saved_model": float(np.abs(scores[name] - scores["saved_model"]).max()),
            }
        )

    print(f"held-out: {len(labels)} images of {held_source}; threads per engine: {threads}")
    head = (
        f"{'format':<16}{'MB':>7}{'b1 ms':>9}{'b1 ratio':>10}{f'b{big} img/s':>12}{f'b{big} ratio':>11}"
        f"{'top-1':>8}{'agree':>8}{'max diff':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['format']:<16}{r['bytes'] / 1e6:>7.2f}{r['batch1_median_ms']:>9.1f}{r['batch1_ratio']:>10.2f}"
            f"{r[f'batch{big}_images_per_s']:>12.1f}{r[f'batch{big}_ratio']:>11.2f}"
            f"{r['top1_accuracy']:>8.3f}{r['top1_agreement_with_saved_model']:>8.3f}"
            f"{r['max_abs_score_diff_vs_saved_model']:>10.2g}"
        )
    print("ratio: images/s over the SavedModel's (predict_pixels), same batch, same run; >1 is faster")
    import onnxruntime as ort
    import tensorflow as tf

    result_json = {
        "benchmark": "deploy formats of one finetuned model: latency (batch 1), throughput (batch "
        f"{big}), size, held-out top-1; SavedModel predict_pixels is the reference",
        "tiny": bool(args.tiny),
        "machine": info,
        "threads_per_engine": threads,
        "model": {"base": card.get("base"), "input_size": [h, w], "classes": card["classes"], "data": args.data},
        "finetune": {"epochs": epochs, "finetune_epochs": ft_epochs, "run_metrics": card.get("metrics")},
        "held_out": {"images": len(labels), "source": held_source},
        "batches": [1, big],
        "rounds": rounds,
        "repeats": repeats,
        "versions": {"tensorflow": tf.__version__, "onnxruntime": ort.__version__, "litert": _litert_version()},
        "export_verification": {
            "tflite": card.get("tflite", {}).get("verification"),
            "onnx": card["onnx"].get("verification"),
        },
        "phase_seconds": phase,
        "rows": rows,
    }
    write_json(out, result_json)
    print(f"wrote {out}")
    return 0


def _litert_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # not installed: tf.lite.Interpreter was used
        return None


if __name__ == "__main__":
    sys.exit(main())
