"""Dense evaluation: slide a classifier over whole images in one pass per scale.

A classifier converted by :mod:`tlkit.dense.convert` returns, for an image larger
than its training crop, a map of class scores: position ``(i, j)`` scores the
crop whose top-left corner is ``(i * S, j * S)`` (``S`` the net's total stride,
32 for VGG16 and EfficientNet-Lite0). For VGG16 a 384x384 image gives a
6x6x1000 map from one forward pass instead of 36 crops.

* **Scales**: each image is resized so that its shorter side equals the scale
  (``resize="shorter"``, aspect kept; the default) or to ``scale x scale``
  (``resize="square"``), then evaluated.
* **Finer strides**: ``stride=S/f`` runs ``f*f`` passes on the image shifted by
  ``(a*stride, b*stride)`` (top/left rows and columns cropped) and interleaves
  them, ``map[f*i + a, f*j + b] = pass[a, b][i, j]``, trimmed to the size every
  pass covers (VGG16 at 384, stride 16: 6x6 and 5x5 passes give 11x11).
* **Aggregation**: the per-position class probabilities are averaged (or
  max-ed) over positions, then averaged over scales; top-K from that.
* **Borders**: only windows inside the image are kept, at every scale and
  stride: a map has ``floor((side - window) / stride) + 1`` positions per side. A
  net with "same" padding (VGG, EfficientNet) rounds feature-map sizes up, and a
  shifted pass adds positions past the edge; those hang over the image
  (zero-padded) and are trimmed.
* **Bounds**: an image file is checked from its header before decoding
  (``max_pixels``, as ``tlkit predict``), and each resized image must stay within
  ``max_scaled_pixels`` pixels and its sides within ``max_aspect`` : 1 (a thin
  strip scaled to a shorter side of 224 would otherwise become enormous); both
  are checked before anything is resized.
* **Input**: raw RGB pixels 0..255, resized by :mod:`tlkit.data.resize` (the
  resize every command uses). Preprocessing runs inside the graph: the converted
  model gets a :class:`~tlkit.models.preprocessing.Preprocess` layer of the
  evaluator's ``preprocessing`` mode in front (a finetuned tlkit model
  preprocesses inside already, so its mode is ``"none"`` and nothing is added).

Forward passes run batched on whatever device Keras uses; images whose resized
sizes agree share a batch. The geometry (shifts, interleaving, windows, scales and their
bounds) is :mod:`tlkit.dense.geometry`; the result types :mod:`tlkit.dense.results`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np

from tlkit.data.images import MAX_PIXELS
from tlkit.dense.convert import Conversion, convert
from tlkit.dense.geometry import (  # noqa: F401  (dense_map_size, RESIZE_MODES: re-exported)
    MAX_ASPECT,
    MAX_SCALED_PIXELS,
    RESIZE_MODES,
    check_scales,
    dense_map_size,
    interleave,
    interleaved_size,
    resize_for_scale,
    shift_plan,
    windows_inside,
)
from tlkit.dense.results import ClassScore, DenseResult, ScaleMap
from tlkit.errors import ConfigError

AGGREGATES = ("mean", "max")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- the evaluator -------------------------------------------------------------------------


class DenseEvaluator:
    """Dense, multi-scale evaluation with one converted model.

    ``model`` is a classifier (converted here) or a :class:`~tlkit.dense.convert.Conversion`;
    ``preprocessing`` the tlkit mode its input expects (applied to raw pixels);
    ``class_names`` name the output classes; ``compiled=False`` runs passes eagerly.
    """

    def __init__(
        self,
        model: Any,
        *,
        preprocessing: str = "none",
        class_names: Sequence[str] | None = None,
        input_size: tuple[int, int] | None = None,
        batch_size: int = 8,
        compiled: bool = True,
        max_pixels: int = MAX_PIXELS,
        max_scaled_pixels: int = MAX_SCALED_PIXELS,
        max_aspect: float = MAX_ASPECT,
    ) -> None:
        conversion = model if isinstance(model, Conversion) else convert(model, input_size=input_size)
        if conversion.stride <= 0:
            raise ConfigError("the converted model has no spatial output; nothing to evaluate densely")
        if preprocessing != "none":
            # Preprocessing as a layer in front of the fully convolutional model: the same
            # graph tlkit.build(..., include_preprocessing=True) gives the other commands.
            from tlkit.models.factory import with_preprocessing

            conversion = dataclasses.replace(conversion, model=with_preprocessing(conversion.model, preprocessing))
        self.conversion = conversion
        self.preprocessing = preprocessing
        self.class_names = list(class_names) if class_names is not None else None
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.compiled = bool(compiled)
        if min(max_pixels, max_scaled_pixels) < 1 or not max_aspect >= 1:
            raise ConfigError(
                f"limits must be max_pixels >= 1, max_scaled_pixels >= 1, max_aspect >= 1; got "
                f"{max_pixels}, {max_scaled_pixels}, {max_aspect}"
            )
        self.max_pixels = int(max_pixels)
        self.max_scaled_pixels = int(max_scaled_pixels)
        self.max_aspect = float(max_aspect)

    @property
    def net_stride(self) -> int:
        return self.conversion.stride

    @property
    def window(self) -> tuple[int, int]:
        return self.conversion.native_size

    @classmethod
    def from_name(cls, name: str, *, weights: str | None = "imagenet", **kwargs: Any) -> DenseEvaluator:
        """A registry model (``tlkit.build(name, weights=...)``) with its preprocessing and class names."""
        import tlkit

        spec = tlkit.get_spec(name)
        model = tlkit.build(spec.name, weights=weights)
        names = kwargs.pop("class_names", None)
        if names is None and spec.num_classes == 1000:
            from tlkit.imagenet import class_names

            names = class_names()
        return cls(model, preprocessing=kwargs.pop("preprocessing", spec.preprocessing), class_names=names, **kwargs)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs: Any) -> DenseEvaluator:
        """A finetuned model from a run directory (``best.keras`` or ``last.keras``, ``labels.json``).

        tlkit's finetuned models preprocess inside, so the evaluator feeds raw pixels.
        """
        model, labels = load_run_model(run_dir)
        return cls(
            model,
            preprocessing=kwargs.pop("preprocessing", "none"),
            class_names=kwargs.pop("class_names", labels),
            **kwargs,
        )

    # -- forward passes --

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Score maps of a preprocessed batch, ``batch_size`` images at a time; probabilities."""
        model = self.conversion.model
        outs = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i : i + self.batch_size]
            # Compiled (tf.function / jax.jit) by default: EfficientNet-Lite0's many small ops
            # are dispatch-bound when run eagerly. New shapes retrace a few times, then Keras
            # relaxes the traced shape and stops retracing.
            y = model.predict_on_batch(chunk) if self.compiled else model(chunk, training=False)
            if isinstance(y, (list, tuple)):
                y = y[0]
            outs.append(keras.ops.convert_to_numpy(y))
        maps = np.concatenate(outs).astype(np.float32)
        if self.conversion.output_activation == "linear":
            maps = _softmax(maps)  # logits per position -> probabilities, as the aggregation expects
        return maps

    def score_maps(self, images: np.ndarray, stride: int | None = None) -> np.ndarray:
        """Class-score maps ``(N, h, w, K)`` of a batch of same-size raw-pixel images ``(N, H, W, 3)``."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 4:
            raise ConfigError(f"expected a batch (N, H, W, C), got shape {x.shape}")
        wh, ww = self.window
        if x.shape[1] < wh or x.shape[2] < ww:
            raise ConfigError(
                f"images of {x.shape[1]}x{x.shape[2]} are smaller than the network's "
                f"{wh}x{ww} window; use a larger scale"
            )
        shifts = shift_plan(self.net_stride, stride)
        step = int(stride or self.net_stride)
        if len(shifts) == 1:
            maps = self._forward(x)
        else:
            factor = self.net_stride // step
            passes: dict[tuple[int, int], np.ndarray] = {}
            for dy, dx in shifts:  # (0, 0) first: its image is never smaller than the window
                shifted = x[:, dy:, dx:]
                if shifted.shape[1] < wh or shifted.shape[2] < ww:
                    # Too small for one window: no positions along that side, and nothing to run.
                    rows, cols = windows_inside(shifted.shape[1], shifted.shape[2], self.window, self.net_stride)
                    first = passes[(0, 0)]
                    passes[(dy // step, dx // step)] = np.zeros((len(x), rows, cols, first.shape[-1]), first.dtype)
                else:
                    passes[(dy // step, dx // step)] = self._forward(np.ascontiguousarray(shifted))
            maps = interleave(passes, factor)
        rows, cols = windows_inside(x.shape[1], x.shape[2], self.window, step)
        return maps[:, :rows, :cols]  # positions whose windows hang over the edge are dropped

    def evaluate(
        self,
        images: Any,
        *,
        scales: Sequence[int] = (384,),
        stride: int | None = None,
        aggregate: str = "mean",
        top: int = 5,
        resize: str = "shorter",
        progress: Callable[[str], None] | None = None,
    ) -> list[DenseResult]:
        """Evaluate images (paths, arrays, or one of either) at ``scales``; one result per image.

        ``progress`` is called with a line after each scale (several large scales take a while)."""
        if aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not scales:
            raise ConfigError("at least one scale is needed")
        if top < 1:
            raise ConfigError(f"top must be >= 1, got {top}")
        for scale in scales:
            if int(scale) < 1:
                raise ConfigError(f"scales must be positive integers, got {scale}")
        loaded = list(self._load_checked(images, scales, resize))
        per_image: list[list[ScaleMap]] = [[] for _ in loaded]
        step = stride or self.net_stride
        passes = len(shift_plan(self.net_stride, stride))
        for n_done, scale in enumerate(scales, start=1):
            t0 = time.perf_counter()
            resized = [resize_for_scale(img, int(scale), resize) for _, img in loaded]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, r in enumerate(resized):
                groups.setdefault(r.shape, []).append(i)
            for shape, idx in groups.items():
                maps = self.score_maps(np.stack([resized[i] for i in idx]), stride)
                for k, i in enumerate(idx):
                    h0, w0 = loaded[i][1].shape[:2]
                    m = maps[k]
                    agg = m.mean(axis=(0, 1)) if aggregate == "mean" else m.max(axis=(0, 1))
                    per_image[i].append(
                        ScaleMap(
                            scale=int(scale),
                            input_size=(int(shape[0]), int(shape[1])),
                            scores_map=m,
                            stride=step,
                            image_stride=(step * h0 / shape[0], step * w0 / shape[1]),
                            passes=passes,
                            window=self.window,
                            scores=agg,
                        )
                    )
            if progress is not None:
                sizes = sorted({f"{s[0]}x{s[1]}" for s in groups})
                progress(
                    f"scale {scale} ({n_done}/{len(scales)}): {', '.join(sizes)} in {time.perf_counter() - t0:.1f} s"
                )
        results = []
        for (source, img), maps in zip(loaded, per_image):
            scores = np.mean([m.scores for m in maps], axis=0)
            results.append(
                DenseResult(
                    source=source,
                    image_size=(int(img.shape[0]), int(img.shape[1])),
                    maps=maps,
                    scores=scores,
                    top=self._top(scores, top),
                    aggregate=aggregate,
                )
            )
        return results

    def _load_checked(self, images: Any, scales: Sequence[int], resize: str) -> Iterable[tuple[str, np.ndarray]]:
        """(source, RGB array) pairs, each checked against the bounds before it is decoded or resized."""
        items = _as_list(images)
        for k, item in enumerate(items):  # every header first: a bad last image fails before any work
            if isinstance(item, (str, os.PathLike)):
                size = _header_size(item)
                if size is not None:
                    check_scales(
                        str(item),
                        *size,
                        scales,
                        resize,
                        max_scaled_pixels=self.max_scaled_pixels,
                        max_aspect=self.max_aspect,
                    )
            else:
                arr = np.asarray(item)
                if arr.ndim != 3 or arr.shape[-1] != 3:
                    raise ConfigError(f"image {k}: expected an RGB array (H, W, 3), got shape {arr.shape}")
                check_scales(
                    f"<array {k}>",
                    arr.shape[0],
                    arr.shape[1],
                    scales,
                    resize,
                    max_scaled_pixels=self.max_scaled_pixels,
                    max_aspect=self.max_aspect,
                )
        yield from _load_images(items, max_pixels=self.max_pixels)

    def _top(self, scores: np.ndarray, k: int) -> list[ClassScore]:
        order = np.argsort(-scores, kind="stable")[:k]
        names = self.class_names if self.class_names and len(self.class_names) == len(scores) else None
        return [ClassScore(int(i), names[i] if names else str(int(i)), float(scores[i])) for i in order]


def evaluate(
    model: Any,
    images: Any,
    *,
    scales: Sequence[int] = (384,),
    stride: int | None = None,
    aggregate: str = "mean",
    top: int = 5,
    resize: str = "shorter",
    weights: str | None = "imagenet",
    preprocessing: str | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 8,
) -> DenseResult | list[DenseResult]:
    """One-call dense evaluation; ``model`` is a registry name, a Keras model or a Conversion.

    Returns one :class:`DenseResult` for one image (array or path), else a list.
    """
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if class_names is not None:
        kwargs["class_names"] = class_names
    if isinstance(model, str):
        if preprocessing is not None:
            kwargs["preprocessing"] = preprocessing
        ev = DenseEvaluator.from_name(model, weights=weights, **kwargs)
    else:
        ev = DenseEvaluator(model, preprocessing=preprocessing or "none", **kwargs)
    results = ev.evaluate(images, scales=scales, stride=stride, aggregate=aggregate, top=top, resize=resize)
    single = isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3)
    return results[0] if single else results


# --- inputs --------------------------------------------------------------------------------


def _as_list(images: Any) -> list[Any]:
    """A path, an array, a batch array or a list of those, as a list of single images."""
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        return [images]
    return list(images)


def _header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from an image file's header without decoding it; None if PIL cannot tell
    (then :func:`tlkit.data.images.load_rgb` gives the reason)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limits decide, with flags
            with Image.open(path) as im:
                w, h = im.size
                return int(h), int(w)
    except Exception:  # noqa: BLE001  (any unreadable file: load_rgb names the problem)
        return None


def _load_images(images: Any, max_pixels: int = MAX_PIXELS) -> Iterable[tuple[str, np.ndarray]]:
    """(source, RGB array) pairs from a path, an array, a batch array or a list of those."""
    for k, item in enumerate(_as_list(images)):
        if isinstance(item, (str, os.PathLike)):
            from tlkit.data.images import load_rgb

            yield str(item), load_rgb(item, max_pixels=max_pixels)
        else:
            arr = np.asarray(item)
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise ConfigError(f"image {k}: expected an RGB array (H, W, 3), got shape {arr.shape}")
            yield f"<array {k}>", arr


def load_run_model(run_dir: str | os.PathLike) -> tuple[Any, list[str] | None]:
    """(model, class names) of a finetuning run directory (see :func:`tlkit.finetune.evaluation_runs.load_run`)."""
    from tlkit.finetune.evaluation_runs import load_run

    model, labels, _ = load_run(run_dir)
    return model, labels
