"""The SavedModel check: an export reloaded in a fresh process that cannot import tlkit.

:func:`verify_export` reloads a SavedModel in a fresh Python process that cannot import
tlkit (plain TensorFlow, as a server has) and compares it with the Keras model; it also
sends the requests a server must refuse (garbage, a truncated JPEG, an image over the
pixel limit, an empty batch) and checks each is refused with a ``tlkit serving:`` message
and that the next request is still served. The verifying process dies with its parent
(``prctl(PR_SET_PDEATHSIG)`` on Linux, and everywhere a thread that exits when its stdin,
a pipe from the parent, closes).

The module also holds an export's names (card, labels, signatures, TFLite variants) and the
model card readers. The requests it sends are :mod:`tlkit.export.probes`; the TFLite models'
check is :mod:`tlkit.export.verify_tflite`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.data.images import MAX_PIXELS
from tlkit.errors import ExportError, NotFoundError
from tlkit.export.probes import probe_images, refusal_requests
from tlkit.export.serving_decode import decode_images, error_line
from tlkit.export.versions import existing_versions

MODEL_CARD = "tlkit.json"
LABELS_FILE = "labels.txt"
TFLITE_DIR = "tflite"
# model_<variant>.tflite: float32, float16 weights, dynamic-range int8 (int8 weights, float activations)
# and full-integer int8 (uint8 in and out); see tlkit.export.quantize.
TFLITE_VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
PIXELS_SIGNATURE = "predict_pixels"
PIXELS_INPUT = "pixels"
TOLERANCE = 1e-4  # max abs score difference allowed between SavedModel and Keras model
VERIFY_TIMEOUT_S = 600


# The check's child process: a script run by path in a fresh Python (see its docstring).
CHILD_SCRIPT = Path(__file__).with_name("verify_child.py")


class VerificationError(ExportError):
    """The reloaded SavedModel does not behave like the model it was exported from."""


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of an export directory."""
    p = Path(path) / MODEL_CARD
    if not p.is_file():
        raise NotFoundError(f"{path} has no {MODEL_CARD}: not a tlkit export")
    return json.loads(p.read_text(encoding="utf-8"))


def _write_files(scratch: Path, name: str, blobs: Sequence[bytes]) -> list[str]:
    files = []
    for i, data in enumerate(blobs):
        f = scratch / f"{name}{i}"
        f.write_bytes(data)
        files.append(str(f))
    return files


def _run_fresh(
    path: Path,
    probes: Sequence[bytes],
    pixels: np.ndarray,
    refusals: dict[str, list[bytes]],
    scratch: Path,
    timeout: float,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    np.save(scratch / "pixels.npy", pixels)
    req = {
        "images": _write_files(scratch, "probe", probes),
        "pixels": str(scratch / "pixels.npy"),
        "out": str(scratch / "result.npz"),
        "refusals": {k: _write_files(scratch, f"refuse-{k}-", v) for k, v in refusals.items()},
    }
    (scratch / "request.json").write_text(json.dumps(req))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    cmd = [sys.executable, str(CHILD_SCRIPT), str(path), str(scratch / "request.json"), str(os.getpid())]
    with open(scratch / "stdout", "wb") as out, open(scratch / "stderr", "wb") as err:
        # stdin stays open for the child's lifetime: its EOF tells the child that this process is gone.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env, cwd=str(scratch))
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException as exc:  # interrupted or timed out: the child goes with us
            proc.kill()
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise VerificationError(
                    f"the SavedModel's check in a fresh process did not finish within "
                    f"{timeout:.0f} s (a very slow or overloaded machine?); nothing was "
                    f"published; try again"
                ) from None
            raise
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
    if rc != 0:
        stderr = (scratch / "stderr").read_text(errors="replace")
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise VerificationError(f"the SavedModel at {path} failed in a fresh Python process (exit {rc}):\n{tail}")
    meta = json.loads((scratch / "result.npz.json").read_text())
    with np.load(scratch / "result.npz", allow_pickle=True) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def _expect_signatures(meta_sigs: dict[str, Any], card: dict[str, Any]) -> list[str]:
    problems = []
    for name, want in card["signatures"].items():
        got = meta_sigs.get(name)
        if got is None:
            problems.append(f"signature {name!r} is missing")
            continue
        for part in ("inputs", "outputs"):
            w = {k: [v[0], list(v[1])] for k, v in want[part].items()}
            if got[part] != w:
                problems.append(f"{name} {part}: expected {w}, got {got[part]}")
    return problems


def verify_export(
    path: str | Path,
    *,
    model: Any = None,
    probes: Sequence[bytes] | None = None,
    tolerance: float = TOLERANCE,
    timeout: float = VERIFY_TIMEOUT_S,
) -> dict[str, Any]:
    """Reload an export in a fresh process (plain TensorFlow, tlkit unimportable) and check it.

    Checks: both signatures with the card's names, dtypes and shapes; the same scores when
    loaded as TensorFlow Serving and ``saved_model_cli`` do (a TF1 session); the labels asset equals
    the card's classes; ``serving_default`` on the probe bytes equals ``predict_pixels`` on the
    same decoded pixels and, when ``model`` is given, the Keras model on them (max abs
    difference <= ``tolerance``); top-K ids, scores and labels agree with the scores; garbage,
    a truncated JPEG, an image over the card's pixel limit and an empty request are each
    refused with their ``tlkit serving:`` message, and the next request still succeeds.
    Returns a report; raises :class:`VerificationError` listing every failed check.
    """
    started = time.time()
    path = Path(path).resolve()  # the fresh process runs in a scratch directory
    card = read_card(path)
    size = tuple(card["input_size"])
    resize = card["preprocessing"]["resize"]
    max_pixels = card.get("max_pixels")
    phone = bool(card["preprocessing"].get("exif_orientation"))  # WebP and EXIF orientation in the graph
    probes = list(probes) if probes is not None else probe_images(phone)
    pixels = decode_images(tf.constant(probes), size, resize, max_pixels=max_pixels or MAX_PIXELS).numpy()
    refusals = refusal_requests(probes, max_pixels)
    with tempfile.TemporaryDirectory(prefix="tlkit-verify-") as scratch:
        meta, res = _run_fresh(path, probes, pixels, {k: v[0] for k, v in refusals.items()}, Path(scratch), timeout)

    problems = _expect_signatures(meta["signatures"], card)
    labels = card["classes"]
    if meta["labels"] != labels:
        problems.append("assets/labels.txt does not hold the card's class names")
    if meta["tlkit_imported"]:
        problems.append("the SavedModel imported tlkit")
    diff_bp = float(np.max(np.abs(res["scores_bytes"] - res["scores_pixels"])))
    if not diff_bp <= tolerance:
        problems.append(f"serving_default and predict_pixels disagree on the same pixels (max abs diff {diff_bp:.3g})")
    diff_v1 = max(
        float(np.max(np.abs(res["scores_v1_bytes"] - res["scores_bytes"]))),
        float(np.max(np.abs(res["scores_v1_pixels"] - res["scores_pixels"]))),
    )
    if not diff_v1 <= tolerance:
        problems.append(f"loaded as TensorFlow Serving does (TF1 session), the scores differ by {diff_v1:.3g}")
    diff_keras = None
    if model is not None:
        keras_scores = np.asarray(model(pixels, training=False), dtype=np.float32)
        diff_keras = float(np.max(np.abs(res["scores_bytes"] - keras_scores)))
        if not diff_keras <= tolerance:
            problems.append(
                f"the SavedModel's scores differ from the Keras model's by {diff_keras:.3g} (tolerance {tolerance:g})"
            )
    problems += _check_top_k(res, labels, int(card["top_k"]), len(probes))
    if card.get("multi_label"):
        problems += _check_above_threshold(res, labels, card["multi_label"]["thresholds"])
    refused = {}
    for name, (_, expected) in refusals.items():
        got = meta["refusals"].get(name, {})
        line = error_line(got.get("error"))
        refused[name] = line
        if got.get("error") is None:
            problems.append(f"the {name.replace('_', ' ')} request was not refused")
        elif expected not in (line or ""):
            problems.append(
                f"the {name.replace('_', ' ')} request failed without its message "
                f"({expected!r}): {(got.get('error') or '')[:300]}"
            )
    scores = res["scores_bytes"]
    if not np.max(np.abs(res["scores_after_bad"][0] - scores[0])) <= tolerance:
        problems.append("after the refused requests, the model no longer answers as before")
    ids = res["top_k_ids_bytes"]
    top1 = (
        [{"id": int(i[0]), "label": labels[int(i[0])], "score": float(s[int(i[0])])} for i, s in zip(ids, scores)]
        if ids.ndim == 2
        else []
    )
    report = {
        "passed": not problems,
        "problems": problems,
        "path": str(path),
        "max_abs_diff_bytes_vs_pixels": diff_bp,
        "max_abs_diff_vs_keras": diff_keras,
        "max_abs_diff_session_vs_eager": diff_v1,
        "tolerance": tolerance,
        "probes": len(probes),
        "top1": top1,
        "bad_request_error": refused.get("garbage"),
        "refused": refused,
        "max_pixels": max_pixels,
        "load_s": meta["load_s"],
        "seconds": round(time.time() - started, 2),
    }
    if problems:
        raise VerificationError(f"verification of {path} failed:\n  - " + "\n  - ".join(problems))
    return report


def _check_top_k(res: dict[str, np.ndarray], labels: list[str], k: int, n: int) -> list[str]:
    scores, ids = res["scores_bytes"], res["top_k_ids_bytes"]
    if ids.shape != (n, k):
        return [f"top_k_ids has shape {ids.shape}, expected {(n, k)}"]
    problems = []
    top_scores = np.take_along_axis(scores, ids.astype(np.int64), axis=1)
    if not np.array_equal(top_scores, res["top_k_scores_bytes"]):
        problems.append("top_k_scores are not the scores at top_k_ids")
    if not np.array_equal(np.sort(scores, axis=1)[:, ::-1][:, :k], res["top_k_scores_bytes"]):
        problems.append("top_k_scores are not the K highest scores")
    want = np.asarray(labels, dtype=object)[ids]
    got = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(res["top_k_labels_bytes"])
    if not (want == got).all():
        problems.append("top_k_labels do not name the classes at top_k_ids")
    return problems


def _check_above_threshold(res: dict[str, np.ndarray], labels: list[str], thresholds: dict[str, float]) -> list[str]:
    """A multi-label export: above_threshold is scores >= the card's thresholds, and
    labels_above_threshold names those classes ("" elsewhere), on both signatures."""
    t = np.asarray([thresholds[c] for c in labels], dtype=np.float32)
    problems = []
    for via in ("bytes", "pixels"):
        want = res[f"scores_{via}"] >= t[None, :]
        if not np.array_equal(res.get(f"above_threshold_{via}"), want):
            problems.append(f"above_threshold ({via}) is not scores >= the card's thresholds")
            continue
        names = np.where(want, np.asarray(labels, dtype=object)[None, :], "")
        got = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(res[f"labels_above_threshold_{via}"])
        if not (names == got).all():
            problems.append(f"labels_above_threshold ({via}) does not name the classes above threshold")
    return problems


def card_verification(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a verification report the model card keeps."""
    keep = (
        "passed",
        "max_abs_diff_bytes_vs_pixels",
        "max_abs_diff_vs_keras",
        "max_abs_diff_session_vs_eager",
        "tolerance",
        "probes",
        "bad_request_error",
        "refused",
        "seconds",
    )
    return {k: report[k] for k in keep if k in report}


def resolve_export_dir(path: str | Path) -> Path:
    """A version directory as given, or the highest version inside a model directory."""
    p = Path(path)
    if (p / "saved_model.pb").is_file():
        return p
    versions = existing_versions(p)
    if versions:
        return p / str(versions[-1])
    raise NotFoundError(f"{p} is neither a SavedModel version directory nor holds numbered versions")


def check_export(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``tlkit export --check``: verify any tlkit export (no Keras model needed)."""
    return verify_export(resolve_export_dir(path), **kwargs)
