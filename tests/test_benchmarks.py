"""The benchmarks keep running: bench_data.py --smoke and gpu.sh --tiny, each in a subprocess.

Only the shape of their JSON is asserted (every row present, positive rates, ratios that are the
quotients they claim to be), never a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

DATA_ROWS = [
    "network (predict_on_batch, ready tensors)",
    "decode + resize (tf.data, no model)",
    "serial bound 1/(1/decode + 1/network)",
    "extract steady, 1st run",
    "extract end to end, 1st run",
    "extract steady, 2nd run",
    "extract end to end, 2nd run",
    "fit stage 1 in memory",
    "finetune stage 1 from files",
    "finetune stage 1 from files, --cache (epoch 2)",
    "fit stage 2 in memory",
    "finetune stage 2 from files",
    "finetune stage 2 from files, --cache (epoch 2)",
    "evaluate (end to end)",
    "predict (end to end)",
    "serve pixels, batch 1",
    "serve bytes, batch 1",
    "serve bytes plain, batch 1",
    "serve pixels, batch 32",
    "serve bytes, batch 32",
    "serve bytes plain, batch 32",
]
CACHE_ROWS = {r for r in DATA_ROWS if "--cache" in r}

# Whole CLI runs or training: the full suite runs them, the fast tier (-m 'not slow') does not.
pytestmark = pytest.mark.slow

# Makes `import tensorflow` (and tlkit) fail in any Python started with this folder on PYTHONPATH.
BLOCKER = """
import sys


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tlkit"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _run(cmd: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def test_bench_data_smoke_writes_every_row_with_consistent_ratios(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    p = _run([sys.executable, str(BENCH / "bench_data.py"), "--smoke", "--out", str(out)], env, timeout=900)
    assert "CPU:" in p.stdout and "cores" in p.stdout
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["machine"]["cores"] >= 1
    sizes = list(result["photos"])
    assert len(sizes) == 2
    by = {(r["size"], r["row"]): r for r in result["rows"]}
    assert set(by) == {(s, name) for s in sizes for name in DATA_ROWS}
    for s in sizes:

        def rate(name: str) -> float:
            return by[(s, name)]["images_per_s"]  # noqa: B023  (called within this iteration)

        net, dec = rate(DATA_ROWS[0]), rate(DATA_ROWS[1])
        assert rate(DATA_ROWS[2]) == pytest.approx(1 / (1 / net + 1 / dec), rel=1e-9)
        for name in DATA_ROWS:
            r = by[(s, name)]
            if name in CACHE_ROWS and result["cache_flag"] is None:
                assert r["images_per_s"] is None and r["status"] == "n/a (not implemented)", r
                continue
            assert r["status"] == "ok", r
            assert r["images_per_s"] > 0, r
            assert r["vs_network"] == pytest.approx(r["images_per_s"] / net, rel=1e-9)
            if r["bound"] is None:
                assert r["ratio"] is None
            else:
                assert r["bound"] in DATA_ROWS and r["bound_images_per_s"] == rate(r["bound"])
                assert r["ratio"] == pytest.approx(r["images_per_s"] / rate(r["bound"]), rel=1e-9)
        assert by[(s, "serve bytes, batch 32")]["bound"] == "serve pixels, batch 32"
        assert by[(s, "finetune stage 2 from files")]["bound"] == "fit stage 2 in memory"


def test_gpu_sh_tiny_runs_without_tensorflow(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(block), "PYTHON": sys.executable}
    env.pop("KERAS_BACKEND", None)
    # The blocker works: TensorFlow is installed here, and cannot be imported with it.
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert probe.returncode != 0 and "blocked in this test" in probe.stderr
    out = tmp_path / "gpu.json"
    _run(["bash", str(BENCH / "gpu.sh"), "--tiny", "--out", str(out)], env, timeout=900)
    result = json.loads(out.read_text())
    assert result["backend"] == "jax" and result["tiny"] is True
    rows = {r["row"]: r for r in result["rows"]}
    expected = {
        f"train {m} {p}" for m in ("resnet50", "vgg16") for p in ("float32", "mixed_float16", "mixed_bfloat16")
    } | {"dense vgg16", "crops vgg16"}
    assert set(rows) == expected
    for r in rows.values():
        assert r["images_per_s"] > 0, r
        if r["bound"] is not None:
            assert r["ratio"] == pytest.approx(r["images_per_s"] / rows[r["bound"]]["images_per_s"], rel=1e-9)
    assert rows["train vgg16 float32"]["ratio"] == 1.0
    assert result["dense_speedup"] == pytest.approx(
        rows["dense vgg16"]["images_per_s"] / rows["crops vgg16"]["images_per_s"], rel=1e-9
    )
    assert result["crops"] == 4  # tiny: a 64x64 image, 32x32 crops at stride 32 -> a 2x2 map


def test_bench_data_finds_the_cache_flag_in_finetune_help() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_data
    finally:
        sys.path.remove(str(BENCH))
    assert bench_data.cache_flag("  [--cache-features] [--distribute {mirrored}]") is None
    assert bench_data.cache_flag("  --cache-features  stage 1 on features\n  --cache  keep images") == ["--cache"]
    assert bench_data.cache_flag("[--cache {none,memory,disk}] [--cache-budget GB]") == ["--cache", "memory"]
    assert bench_data.cache_flag("[--cache {off,disk}]") == ["--cache", "disk"]
    assert bench_data.cache_flag("  --cache MODE   where to keep decoded images") == ["--cache", "memory"]
    assert bench_data.cache_flag("[--cache mem|DIR] [--cache-budget SIZE]") == ["--cache", "mem"]


def test_bench_deploy_tiny_measures_every_exported_file(tmp_path: Path) -> None:
    """Every format the export wrote is a row (each .tflite file its card lists, ONNX), with ratios
    that are the quotients they claim to be and scores that agree with the SavedModel's."""
    out = tmp_path / "deploy.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(BENCH / "bench_deploy.py"), "--tiny", "--work", str(tmp_path), "--out", str(out)]
    p = _run(cmd, env, timeout=900)
    assert "CPU:" in p.stdout and "cores" in p.stdout
    result = json.loads(out.read_text())
    assert result["tiny"] is True and result["batches"] == [1, 8]
    card = json.loads(next((tmp_path / "models" / "deploy").glob("*/tlkit.json")).read_text())
    expected = ["saved_model", *(f"tflite {v}" for v in card["tflite"]["models"]), "onnx"]
    rows = {r["format"]: r for r in result["rows"]}
    assert list(rows) == expected and len(expected) >= 4
    held = result["held_out"]["images"]
    assert held == 40  # builtin:faces: 200 images, 20% held out
    for name, r in rows.items():
        assert r["bytes"] > 0 and r["batch1_median_ms"] > 0, r
        for b in (1, 8):
            assert r[f"batch{b}_ratio"] == pytest.approx(
                r[f"batch{b}_images_per_s"] / rows["saved_model"][f"batch{b}_images_per_s"], rel=1e-9
            )
        assert r["top1_accuracy"] * held == pytest.approx(round(r["top1_accuracy"] * held))  # a count of 40
        if name in ("tflite float32", "onnx"):  # float formats: the same model, to float precision
            assert r["max_abs_score_diff_vs_saved_model"] <= 1e-4 and r["top1_agreement_with_saved_model"] == 1.0
    assert rows["saved_model"]["batch1_ratio"] == 1.0


def test_bench_scale_tiny_measures_every_row_at_every_size(tmp_path: Path) -> None:
    """bench_scale.py at 200 and 400 files of 10 classes: every row at both sizes, with the counts each
    command reported (the second preflight and check-data remember every file), per-file costs that
    are the quotients they claim to be, and a peak memory for each command."""
    out = tmp_path / "scale.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(BENCH / "bench_scale.py"), "--sizes", "200,400", "--classes", "10"]
    p = _run([*cmd, "--root", str(tmp_path / "data"), "--out", str(out)], env, timeout=600)
    assert "CPU:" in p.stdout and "cores" in p.stdout
    result = json.loads(out.read_text())
    assert result["sizes"] == [200, 400] and result["classes"] == [10]
    assert result["image"]["duplicate_bytes"] is False
    rows = {(r["row"], r["files"]): r for r in result["rows"]}
    names = ["preflight 1st", "preflight 2nd", "check-data", "check-data 2nd", "finetune to step 1"]
    assert set(rows) == {(name, n) for name in names for n in (200, 400)}
    for (name, n), r in rows.items():
        assert r["classes"] == 10 and r["wall_s"] > 0 and 30 < r["peak_mb"] < 4000, r
        assert r["us_per_file"] == pytest.approx(r["wall_s"] / n * 1e6, rel=1e-9)
        assert r["parts"]["n_usable"] == n, r
        reused = {"preflight 1st": 0, "check-data": 0}.get(name, n)  # header-only checks do not count for check-data
        assert r["parts"]["n_reused"] == reused, r
        small = rows[(name, 200)]
        if n == 400:
            assert r["marginal_us_per_file"] == pytest.approx((r["wall_s"] - small["wall_s"]) / 200 * 1e6, rel=1e-9)
        else:
            assert r["marginal_us_per_file"] is None
    for n in (200, 400):
        pre = rows[("preflight 1st", n)]["parts"]
        assert pre["n_files"] == n and pre["classes"] == 10 and pre["duplicates"] == 0 and pre["leaks"] == 0
        ft = rows[("finetune to step 1", n)]
        # 80% of n for training (seeded stratified split), batch 8: the progress bar's step count.
        assert ft["steps_per_epoch"] == n * 8 // 10 // 8
        assert 0 < ft["to_report_s"] < ft["to_stage1_s"] < ft["wall_s"]
    # Every file has its own bytes: the data folder holds n distinct files.
    import hashlib

    files = sorted((tmp_path / "data" / "n400_c10").rglob("*.jpg"))
    assert len(files) == 400 and len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 400
