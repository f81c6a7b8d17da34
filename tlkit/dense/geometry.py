"""Geometry of dense evaluation: shifted passes, interleaving, windows inside the image, scales.

* **Finer strides**: ``stride=S/f`` runs ``f*f`` passes on the image shifted by
  ``(a*stride, b*stride)`` (top/left rows and columns cropped) and interleaves
  them, ``map[f*i + a, f*j + b] = pass[a, b][i, j]``, trimmed to the size every
  pass covers (VGG16 at 384, stride 16: 6x6 and 5x5 passes give 11x11).
* **Borders**: only windows inside the image are kept, at every scale and
  stride: a map has ``floor((side - window) / stride) + 1`` positions per side.
* **Scales**: an image is resized (:mod:`tlkit.data.resize`, the resize every command
  uses) so that its shorter side equals the scale, or to ``scale x scale``; the
  bounds (:func:`check_scales`) are checked before anything is resized.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tlkit.data.resize import SCALE_MODES, scaled_size, to_scale
from tlkit.dense.convert import Conversion
from tlkit.errors import ConfigError

RESIZE_MODES = SCALE_MODES
# 2048 x 2048: a VGG16 pass at that size already holds ~1 GB per early activation.
MAX_SCALED_PIXELS = 2048 * 2048
MAX_ASPECT = 10.0  # longer side : shorter side; wide panoramas are ~6:1


def shift_plan(net_stride: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Shifts ``(dy, dx)`` of the passes that give a map of step ``stride``."""
    if stride is None or stride == net_stride:
        return [(0, 0)]
    if net_stride <= 0:
        raise ConfigError("the network has no spatial stride to refine")
    if stride <= 0 or stride > net_stride or net_stride % stride:
        raise ConfigError(f"stride must divide the network's stride {net_stride}; got {stride}")
    f = net_stride // stride
    return [(a * stride, b * stride) for a in range(f) for b in range(f)]


def interleaved_size(pass_sizes: dict[tuple[int, int], tuple[int, int]], factor: int) -> tuple[int, int]:
    """Size of the interleaved map: every row/column some pass covers, with no gap.

    Pass ``(a, b)`` fills rows ``f*i + a``; the first row it cannot fill is
    ``f*n_a + a``, so the map ends at the smallest of those.
    """
    rows = min(factor * size[0] + a for (a, _), size in pass_sizes.items())
    cols = min(factor * size[1] + b for (_, b), size in pass_sizes.items())
    return rows, cols


def interleave(passes: dict[tuple[int, int], np.ndarray], factor: int) -> np.ndarray:
    """Interleave pass maps ``(N, h_ab, w_ab, K)`` keyed by ``(a, b)`` into one ``(N, R, C, K)`` map."""
    rows, cols = interleaved_size({k: v.shape[1:3] for k, v in passes.items()}, factor)
    first = next(iter(passes.values()))
    out = np.empty((first.shape[0], rows, cols, *first.shape[3:]), dtype=first.dtype)
    for (a, b), p in passes.items():
        n_r, n_c = len(range(a, rows, factor)), len(range(b, cols, factor))
        out[:, a::factor, b::factor] = p[:, :n_r, :n_c]
    return out


def windows_inside(height: int, width: int, window: tuple[int, int], stride: int) -> tuple[int, int]:
    """Windows of ``window`` pixels every ``stride`` pixels that fit inside the image, per side."""
    return (max(0, (int(height) - window[0]) // stride + 1), max(0, (int(width) - window[1]) // stride + 1))


def dense_map_size(conversion: Conversion, height: int, width: int, stride: int | None = None) -> tuple[int, int]:
    """Map size for an input of ``height`` x ``width`` at ``stride`` (no forward pass): the
    positions the network gives whose windows lie inside the image."""
    shifts = shift_plan(conversion.stride, stride)
    step = stride or conversion.stride
    fit = windows_inside(height, width, conversion.native_size, step)
    if min(fit) == 0:
        return fit
    if len(shifts) == 1:
        rows, cols = conversion.output_size(height, width)
    else:
        sizes = {(dy // step, dx // step): _pass_size(conversion, height - dy, width - dx) for dy, dx in shifts}
        rows, cols = interleaved_size(sizes, conversion.stride // step)
    return min(rows, fit[0]), min(cols, fit[1])


def _pass_size(conversion: Conversion, height: int, width: int) -> tuple[int, int]:
    """Map size of one shifted pass; a pass whose image is smaller than the window is not run,
    and counts only the windows that fit (none along the short side)."""
    wh, ww = conversion.native_size
    if height < wh or width < ww:
        return windows_inside(height, width, conversion.native_size, conversion.stride)
    return conversion.output_size(height, width)


def check_scales(
    source: str,
    height: int,
    width: int,
    scales: Sequence[int],
    mode: str = "shorter",
    *,
    max_scaled_pixels: int = MAX_SCALED_PIXELS,
    max_aspect: float = MAX_ASPECT,
) -> None:
    """Refuse (ConfigError) an image whose resized form would exceed the bounds; nothing is allocated."""
    h, w = int(height), int(width)
    limits = (
        f"limits: sides up to {max_aspect:g}:1 (--max-aspect) and {max_scaled_pixels:,} pixels after "
        "resizing (--max-scaled-pixels)"
    )
    aspect = max(h, w) / max(1, min(h, w))
    if mode == "shorter" and aspect > max_aspect:
        sh, sw = scaled_size(h, w, min(scales), mode)
        raise ConfigError(
            f"{source} is {h}x{w} pixels, an aspect ratio of {aspect:.4g}:1; at scale {min(scales)} "
            f"it would become {sh}x{sw} ({sh * sw:,} pixels); {limits}"
        )
    for scale in scales:
        sh, sw = scaled_size(h, w, scale, mode)
        if sh * sw > max_scaled_pixels:
            raise ConfigError(
                f"{source} ({h}x{w}) at scale {scale} would become {sh}x{sw} = {sh * sw:,} pixels; "
                f"{limits}; use smaller --scales or raise the limit"
            )


def resize_for_scale(image: np.ndarray, scale: int, mode: str = "shorter") -> np.ndarray:
    """``image`` (H, W, 3) resized to ``scale`` (shorter side, or square) by
    :func:`tlkit.data.resize.to_scale` (run eagerly); float32."""
    h, w = image.shape[:2]
    image = np.asarray(image, dtype=np.float32)
    if scaled_size(h, w, scale, mode) == (h, w):
        return image
    return to_scale(image, scale, mode).numpy()
