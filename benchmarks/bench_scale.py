"""Cost as the data grows (issue 21): wall time and peak memory of tlkit's per-file work at 10k-200k files.

Run: ``python benchmarks/bench_scale.py [--sizes 10000,50000,200000] [--classes 100,1000]
[--root /tmp/tlkit-scale] [--keep] [--out PATH]``. Writes ``benchmarks/results/scale.json``
(with other sizes than the default: ``--out`` elsewhere, e.g. the test's temp file).

**Data.** For each size N and class count C, a folder ``ROOT/nN_cC/class_K/img_I.jpg`` of N small
JPEGs (64x64, q90, about 2.5 KB), file I in class I mod C. The pixels come from 256 distinct
images (skimage's sample photos, cropped; ``_bench_util.photo``) encoded once; every file gets
its own JPEG comment segment (``tlkit-scale I``), so **no two files have the same bytes**: the
duplicate and leak checks (by SHA-256) find nothing to report, as in a clean data set, and
nothing short-circuits on equal content. The files are written once into ``ROOT/pool/`` and
hard-linked into each folder (the folders share inodes: 200k files take about 0.6 GB once),
and kept between runs of this script (``--clean`` deletes ROOT at the end). Every figure is
measured with the files in the page cache (they were just written or read): this is tlkit's own
cost per file, not the disk's.

**Measured**, each command in its own process (the one that the row names; wall time from start to
exit, peak memory = the process' RSS high-water mark, ``ru_maxrss`` from ``os.wait4``), with
``TLKIT_HOME`` (where the preflight remembers its checks) a fresh folder per data folder:

* ``preflight 1st``: what ``tlkit finetune`` runs before TensorFlow starts (as ``tlkit.finetune.pipeline.load_data``:
  list the folder and split it, check every file (JPEGs by their header and markers, each file hashed),
  apply the leak policy, the report's text), in ``python -c``; nothing remembered yet.
* ``preflight 2nd``: the same again: every file's check is remembered (same size, times and inode).
* ``check-data``: ``tlkit check-data FOLDER`` (decodes every file in full: the header-only checks
  remembered by the preflight do not count for it), then ``check-data 2nd`` (its own full decodes remembered).
* ``finetune to step 1``: ``tlkit finetune FOLDER --epochs 1`` with the tiny ``cifar_example`` model at 32x32,
  batch 8, from its start to the end of its first training step: stdout is a terminal (a pty) so Keras
  prints its progress bar, and the first ``1/STEPS`` it prints ends the measure (the process is then
  killed). It includes importing TensorFlow and building the model (a constant) and the preflight with
  every check remembered (check-data ran before it); ``seconds to data report`` is when its data report appeared.

Per-file cost: wall time / N (constant costs, such as importing TensorFlow, included), and the marginal
cost between consecutive sizes (delta wall time / delta N): linear growth means a flat marginal cost.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _bench_util as util  # benchmarks/ is the script's folder, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "scale.json"
BASES = 256  # distinct pictures; every file still has its own bytes (a comment segment)
SIDE = 64
ROWS = ["preflight 1st", "preflight 2nd", "check-data", "check-data 2nd", "finetune to step 1"]
TINY = ["--base", "cifar_example", "--weights", "none", "--input-size", "32", "32", "--batch-size", "8"]
TINY += ["--no-augment", "--seed", "0", "--epochs", "1", "--finetune-epochs", "0"]
FIRST_STEP = re.compile(r"(?:^|[\r\n])\s*1/(\d+) ")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Keras colours its progress bar on a terminal

# What ``preflight 1st/2nd`` runs in its child process: finetune's load_data, timed by part.
PREFLIGHT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from tlkit.cli.main import use_system_allocator_for_arrow
use_system_allocator_for_arrow()  # as the tlkit command does
from tlkit.data import pipeline as tldata
from tlkit.data import preflight
t1 = time.perf_counter()
source = tldata.resolve(sys.argv[1])
t2 = time.perf_counter()
report = preflight.check(source, progress=False)
t3 = time.perf_counter()
items, _ = preflight.apply_leak_policy(report, "drop")
text = report.to_text()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "listing_s": t2 - t1, "check_s": t3 - t2, "report_s": t4 - t3,
    "n_files": report.n_files, "n_usable": report.n_usable, "n_reused": report.n_reused,
    "n_skipped": report.n_skipped, "duplicates": len(report.duplicates), "leaks": len(report.leaks),
    "classes": len(report.classes), "items": len(items)}))
"""


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TLKIT_HOME": str(home),
        "TLKIT_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONUNBUFFERED": "1",
    }


def _commented(jpeg: bytes, i: int) -> bytes:
    """``jpeg`` with a COM segment naming ``i`` right after its SOI marker: same pixels, own bytes."""
    text = f"tlkit-scale {i}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def make_pool(root: Path, n: int) -> Path:
    """``root/pool/I.jpg`` for I < n (those already there are kept)."""
    pool = root / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    have = len(os.listdir(pool))
    if have >= n:
        return pool
    srcs = util._sources()
    bases = [util.jpeg_bytes(util.photo(k, (SIDE, SIDE), srcs)) for k in range(BASES)]
    for i in range(have, n):  # written in order, so the first `have` are complete but the last
        (pool / f"{i:07d}.jpg").write_bytes(_commented(bases[i % BASES], i))
    return pool


def make_folder(root: Path, n: int, classes: int) -> Path:
    """``root/nN_cC/class_K/img_I.jpg``, hard links into the pool; made once (a marker says it is complete)."""
    folder = root / f"n{n}_c{classes}"
    if (folder / ".complete").exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    pool = make_pool(root, n)
    for k in range(classes):
        (folder / f"class_{k:04d}").mkdir(parents=True)
    for i in range(n):
        os.link(pool / f"{i:07d}.jpg", folder / f"class_{i % classes:04d}" / f"img_{i:07d}.jpg")
    (folder / ".complete").write_text(str(n))  # hidden: not listed by tlkit
    return folder


def _reap(pid: int, timeout: float | None) -> tuple[int | None, float]:
    """Wait for child ``pid`` (at most ``timeout`` s; None: for ever): (exit code or None if still
    running, peak RSS in MB). ``wait4`` reports the RSS high-water mark of that one child (Linux: KB)."""
    deadline = None if timeout is None else time.perf_counter() + timeout
    while True:
        got, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024
        if time.perf_counter() >= deadline:
            return None, float("nan")
        time.sleep(0.02)


def _measure(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` to its end: wall seconds, peak RSS (MB), exit code, stdout, stderr's tail."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        rc, peak = _reap(p.pid, timeout)
        wall = time.perf_counter() - t0
        if rc is None:
            p.kill()
            rc, peak = _reap(p.pid, None)
            rc = f"timed out after {timeout} s"
        p.returncode = rc  # reaped here (Popen must not wait for it again)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_mb": peak, "rc": rc, "stdout": out.read().decode(), "stderr": err.read().decode()}


def _until_first_step(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` with stdout on a pty until Keras prints its first ``1/STEPS``; then kill it."""
    import tempfile

    master, slave = pty.openpty()
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=slave, stderr=err, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    marks: dict[str, float] = {}
    steps = None
    while time.perf_counter() < t0 + timeout:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            if os.waitpid(p.pid, os.WNOHANG)[0] == p.pid:  # exited early (it failed): no rusage needed
                p.returncode = -1
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the pty (it exited)
            chunk = b""
        if not chunk:
            break
        out += chunk
        now = time.perf_counter() - t0
        text = ANSI.sub("", out.decode(errors="replace"))
        if "report" not in marks and "data: " in text:
            marks["report"] = now
        if "stage" not in marks and "stage 1:" in text:
            marks["stage"] = now
        if "stage" in marks:
            m = FIRST_STEP.search(text[text.find("stage 1:") :])
            if m:
                marks["step"] = now
                steps = int(m.group(1))
                break
    peak = float("nan")
    if p.returncode is None:
        p.send_signal(signal.SIGKILL)
        _, peak = _reap(p.pid, None)
        p.returncode = -9
    os.close(master)
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    return {
        "wall_s": marks.get("step"),
        "to_report_s": marks.get("report"),
        "to_stage1_s": marks.get("stage"),
        "steps_per_epoch": steps,
        "peak_mb": peak,
        "stdout": out.decode(errors="replace"),
        "stderr": stderr,
    }


def measure_folder(folder: Path, n: int, classes: int, home: Path, timeout: float) -> list[dict[str, Any]]:
    """Every row for one data folder, in order (each later row finds what the earlier ones remembered)."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = _env(home)
    rows = []
    tlkit = [sys.executable, "-m", "tlkit"]
    for row in ROWS:
        if row.startswith("preflight"):
            r = _measure([sys.executable, "-c", PREFLIGHT_CHILD, str(folder)], env, timeout)
            _ok(r, row)
            r["parts"] = json.loads(r["stdout"].strip().splitlines()[-1])
        elif row.startswith("check-data"):
            r = _measure([*tlkit, "check-data", str(folder)], env, timeout)
            _ok(r, row)
            r["parts"] = _counts(r["stdout"])
        else:
            runs = home / "runs"
            cmd = [*tlkit, "finetune", "--data", str(folder), *TINY, "--runs-dir", str(runs), "--name", "scale"]
            r = _until_first_step(cmd, env, timeout)
            if r["wall_s"] is None:
                raise SystemExit(f"{row}: no first step seen\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
            r["parts"] = _counts(r["stdout"])
        r.pop("stdout", None)
        r.pop("stderr", None)
        r.pop("rc", None)
        rows.append({"files": n, "classes": classes, "row": row, **r, "us_per_file": r["wall_s"] / n * 1e6})
        print(f"  {row:20s} {r['wall_s']:8.2f} s {r['peak_mb']:8.1f} MB  {r['parts']}", flush=True)
    return rows


def _counts(text: str) -> dict[str, int]:
    """The counts of a data report's "checked N files ..." line."""
    m = re.search(r"checked (\d+) files [^:]*: (\d+) usable, (\d+) skipped", text)
    if m is None:
        raise SystemExit(f"no data report in:\n{text[-3000:]}")
    reused = re.search(r"; (\d+) unchanged since", text)
    return {"n_files": int(m.group(1)), "n_usable": int(m.group(2)), "n_reused": int(reused.group(1)) if reused else 0}


def _ok(r: dict[str, Any], row: str) -> None:
    if r["rc"] != 0:
        raise SystemExit(f"{row} failed (exit {r['rc']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")


def add_marginal(rows: list[dict[str, Any]]) -> None:
    """``marginal_us_per_file``: (wall - wall at the next smaller size) / (files - its files), same row and classes."""
    for r in rows:
        smaller = [q for q in rows if q["row"] == r["row"] and q["classes"] == r["classes"] and q["files"] < r["files"]]
        if smaller:
            q = max(smaller, key=lambda q: q["files"])
            r["marginal_us_per_file"] = (r["wall_s"] - q["wall_s"]) / (r["files"] - q["files"]) * 1e6
        else:
            r["marginal_us_per_file"] = None


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'row':20s} {'classes':>7s} {'files':>7s} {'wall s':>8s} {'us/file':>8s} {'marg.':>8s} {'peak MB':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        marg = f"{r['marginal_us_per_file']:8.1f}" if r.get("marginal_us_per_file") is not None else f"{'':8s}"
        print(
            f"{r['row']:20s} {r['classes']:7d} {r['files']:7d} {r['wall_s']:8.2f} {r['us_per_file']:8.1f} "
            f"{marg} {r['peak_mb']:8.1f}"
        )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_ints, default=[10000, 50000, 200000], help="files per folder (comma list)")
    parser.add_argument("--classes", type=_ints, default=[100, 1000], help="class counts (comma list)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/tlkit-scale"), help="where the folders are made")
    parser.add_argument("--clean", action="store_true", help="delete --root at the end")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per measured command")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON (default {RESULTS}, full sizes only)")
    args = parser.parse_args(argv)
    sizes, class_counts = sorted(args.sizes), sorted(args.classes)
    out = args.out or (RESULTS if sizes == [10000, 50000, 200000] else None)
    mach = util.machine()
    print(f"CPU: {mach['cpu']}, {mach['cores']} cores; Python {mach['python']}")
    t0 = time.perf_counter()
    folders = {(n, c): make_folder(args.root, n, c) for n in sizes for c in class_counts}
    made_s = time.perf_counter() - t0
    time.sleep(2.5)  # files written within 2 s are not remembered by the preflight (racily clean)
    print(f"data: {len(folders)} folders under {args.root} ({made_s:.1f} s to make)", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for (n, c), folder in folders.items():
            print(f"{n} files, {c} classes:", flush=True)
            rows += measure_folder(folder, n, c, args.root / "home" / folder.name, args.timeout)
    finally:
        if args.clean:
            shutil.rmtree(args.root, ignore_errors=True)
    rows.sort(key=lambda r: (ROWS.index(r["row"]), r["classes"], r["files"]))
    add_marginal(rows)
    print_table(rows)
    result = {
        "machine": mach,
        "sizes": sizes,
        "classes": class_counts,
        "image": {"side": SIDE, "format": "JPEG q90", "distinct_pictures": BASES, "duplicate_bytes": False},
        "finetune_args": TINY,
        "rows": rows,
    }
    if out is not None:
        util.write_json(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
