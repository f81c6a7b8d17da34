"""What dense evaluation returns: per-scale score maps and per-image results."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tlkit.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """One of the top classes: index, name and aggregated score."""

    index: int
    name: str
    score: float


@dataclasses.dataclass
class ScaleMap:
    """The class-score map of one image at one scale.

    ``scores_map`` is ``(h, w, K)``; position ``(i, j)`` scores the window of
    ``window`` pixels with top-left corner ``(i * stride, j * stride)`` in the
    resized image (``image_stride``: the same step in original-image pixels).
    """

    scale: int
    input_size: tuple[int, int]
    scores_map: np.ndarray
    stride: int
    image_stride: tuple[float, float]
    passes: int
    window: tuple[int, int]
    scores: np.ndarray  # aggregated over positions, (K,)

    @property
    def map_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.scores_map.shape)  # type: ignore[return-value]

    def window_map(self, class_index: int, fill: float = 0.0) -> np.ndarray:
        """Image-aligned map of one class on a grid of ``stride``-pixel cells.

        Each cell holds the mean score of the windows that contain it; the grid has
        ``ceil(side / stride)`` cells a side, so it covers the resized image (the last
        cell may reach past its edge: :meth:`grid_extent`). Cells no window reaches (a
        strip at the right and bottom edges where no whole window fits) hold ``fill``:
        pass ``np.nan`` to tell them from a score of 0.
        """
        h, w = self.input_size
        s = self.stride
        rows, cols = -(-h // s), -(-w // s)
        acc = np.zeros((rows, cols))
        cnt = np.zeros((rows, cols))
        wh, ww = -(-self.window[0] // s), -(-self.window[1] // s)
        values = self.scores_map[..., class_index]
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                acc[i : i + wh, j : j + ww] += values[i, j]
                cnt[i : i + wh, j : j + ww] += 1
        return np.divide(acc, cnt, out=np.full_like(acc, fill), where=cnt > 0)

    def grid_extent(self, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """Where :meth:`window_map`'s grid lies on the original image of ``image_size`` (h, w):
        (left, right, bottom, top) in its pixels, for drawing."""
        h, w = self.input_size
        s = self.stride
        rows, cols = -(-h // s), -(-w // s)
        return (0.0, cols * s * image_size[1] / w, rows * s * image_size[0] / h, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "input_size": list(self.input_size),
            "map_shape": list(self.map_shape),
            "stride": self.stride,
            "image_stride": [round(v, 3) for v in self.image_stride],
            "passes": self.passes,
            "window": list(self.window),
        }


@dataclasses.dataclass
class DenseResult:
    """Dense evaluation of one image: per-scale maps, aggregated scores, top-K."""

    source: str
    image_size: tuple[int, int]
    maps: list[ScaleMap]
    scores: np.ndarray  # (K,), mean over scales of the per-scale aggregates
    top: list[ClassScore]
    aggregate: str

    def best_map(self, scale: int | None = None) -> ScaleMap:
        """The map at ``scale`` (default: the largest scale, the finest detail)."""
        if scale is None:
            return max(self.maps, key=lambda m: m.scale)
        for m in self.maps:
            if m.scale == scale:
                return m
        raise ConfigError(f"no map at scale {scale}; scales: {[m.scale for m in self.maps]}")

    def score_map(self, class_index: int | None = None, scale: int | None = None) -> np.ndarray:
        """The ``(h, w)`` score map of a class (default: the top class) at a scale."""
        idx = self.top[0].index if class_index is None else int(class_index)
        return self.best_map(scale).scores_map[..., idx]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (maps as shapes, not values)."""
        return {
            "image": self.source,
            "image_size": list(self.image_size),
            "aggregate": self.aggregate,
            "scales": [m.to_dict() for m in self.maps],
            "top": [
                {"rank": r + 1, "index": c.index, "name": c.name, "score": round(c.score, 6)}
                for r, c in enumerate(self.top)
            ],
        }
