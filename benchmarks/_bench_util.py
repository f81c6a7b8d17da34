"""Shared pieces of the data benchmarks: deterministic test photos, the CPU's name, the table, the JSON.

Imports neither TensorFlow nor tlkit (bench_decode.py and the tests use it alone).
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def call_times(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return runs


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores this process may use, Python."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "python": platform.python_version(), "platform": platform.platform()}


def _sources() -> list[Any]:
    import numpy as np
    from skimage import data

    return [np.ascontiguousarray(f()) for f in (data.chelsea, data.astronaut, data.coffee, data.rocket)]


def photo(index: int, size: tuple[int, int], sources: Sequence[Any] | None = None) -> Any:
    """A deterministic RGB uint8 ``(h, w, 3)`` photo for ``size = (w, h)``, different for every ``index``.

    Small sizes are one sample photo (a shifted crop, resized); large ones tile several sample
    photos, each upscaled about 1.5x, so a 3000x2250 image has a camera photo's amount of detail
    (and so of JPEG bytes to decode) rather than one smooth upscaled picture.
    """
    import numpy as np
    from PIL import Image

    srcs = list(sources) if sources is not None else _sources()
    w, h = size
    grid = max(1, round(w / 750))
    rows_, cols = max(1, round(h / 562)) if grid > 1 else 1, grid
    canvas = np.zeros((h, w, 3), np.uint8)
    ys = np.linspace(0, h, rows_ + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    for r in range(rows_):
        for c in range(cols):
            k = index * 7 + r * cols + c
            src = srcs[k % len(srcs)]
            sh, sw = src.shape[:2]
            # A crop of 80-95% of the source, its offset and flip chosen by k: every file differs.
            fh, fw = int(sh * (0.8 + 0.05 * (k % 4))), int(sw * (0.8 + 0.05 * ((k // 4) % 4)))
            oy, ox = (k * 13) % (sh - fh + 1), (k * 29) % (sw - fw + 1)
            crop = src[oy : oy + fh, ox : ox + fw]
            if (k // 16) % 2:
                crop = crop[:, ::-1]
            tile = Image.fromarray(np.ascontiguousarray(crop)).resize(
                (xs[c + 1] - xs[c], ys[r + 1] - ys[r]), Image.BICUBIC
            )
            canvas[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = np.asarray(tile)
    return canvas


def jpeg_bytes(rgb: Any, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_photos(folder: Path, n: int, size: tuple[int, int], *, classes: int = 2, quality: int = 90) -> list[Path]:
    """``n`` JPEGs (quality ``quality``) of ``size`` in ``folder/class_K/``, ``n // classes`` per class.

    Their modification times are set one minute back, so tlkit's preflight may remember its
    checks of them at once (it does not trust files written within the last seconds).
    """
    import time

    srcs = _sources()
    paths = []
    for i in range(n):
        p = folder / f"class_{i % classes}" / f"img_{i:04d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(jpeg_bytes(photo(i, size, srcs), quality))
        past = time.time() - 60
        os.utime(p, (past, past))
        paths.append(p)
    return sorted(paths)


def print_table(rows: list[dict[str, Any]], sizes: list[str], short: dict[str, str]) -> None:
    """One line per row: images/s and (ratio to its bound) for each photo size; ``short`` names the bounds."""
    names = list(dict.fromkeys(r["row"] for r in rows))
    by = {(r["size"], r["row"]): r for r in rows}
    head = f"{'images/s (ratio to bound)':48s} {'bound':>8s}" + "".join(f"{s:>24s}" for s in sizes)
    print(head)
    print("-" * len(head))
    for name in names:
        cells = []
        bound = ""
        for s in sizes:
            r = by.get((s, name))
            if r is None:
                cells.append(f"{'':>24s}")
                continue
            bound = short.get(r["bound"], "") if r["bound"] else ""
            if r["images_per_s"] is None:
                cells.append(f"{r['status'][:23]:>24s}")
            else:
                ratio = f"({r['ratio']:.2f})" if r["ratio"] is not None else ""
                cells.append(f"{r['images_per_s']:>16.1f} {ratio:>7s}")
        print(f"{name[:48]:48s} {bound:>8s}" + "".join(cells))
    print("bounds: " + "; ".join(f"{v} = {k}" for k, v in short.items()))


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` atomically (temp file, then rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
