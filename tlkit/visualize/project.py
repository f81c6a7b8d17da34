"""The strongest activations of a layer's channels, their receptive fields, and their projections.

For each chosen channel the images are ranked by the channel's largest value anywhere in them;
for each of the ``top`` best images the winning position is kept, every other activation of the
layer set to zero, and that one activation is sent back to the pixels through the model copy of
:mod:`tlkit.visualize.rules` (the gradient of that single activation with respect to the input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlkit.errors import ConfigError


@dataclass(frozen=True)
class Geometry:
    """Where an output position of a layer looks in the input, per axis (H, W):
    position ``i`` sees input pixels ``start + i * jump`` .. ``start + i * jump + rf - 1``."""

    rf: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    exact: bool = True  # False: a layer on the way has no known geometry (the box is the whole image)

    def box(self, y: int, x: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, clipped to the image."""
        if not self.exact:
            return (0, 0, image_hw[0], image_hw[1])
        t = self.start[0] + y * self.jump[0]
        left = self.start[1] + x * self.jump[1]
        return (max(t, 0), max(left, 0), min(t + self.rf[0], image_hw[0]), min(left + self.rf[1], image_hw[1]))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def _step(layer: Any, g: Geometry, in_hw: tuple[int, int]) -> Geometry:
    """The geometry after ``layer``, given its input's."""
    import keras

    from tlkit.inspection import _layer_geometry
    from tlkit.visualize.rules import ThenProjectedReLU

    if isinstance(layer, ThenProjectedReLU):
        layer = layer.linear  # a convolution whose ReLU was moved out: the convolution's geometry
    L = keras.layers
    if isinstance(layer, L.ZeroPadding2D):
        (top, _), (left, _) = layer.padding
        return Geometry(g.rf, g.jump, (g.start[0] - top * g.jump[0], g.start[1] - left * g.jump[1]), g.exact)
    if isinstance(layer, (L.Conv2DTranspose, L.UpSampling2D, L.Cropping2D, L.Resizing)) or (
        isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Flatten))
    ):
        return Geometry(g.rf, g.jump, g.start, exact=False)
    geo = _layer_geometry(layer, [])
    if geo is None:
        return g
    (kh, kw), (sh, sw) = geo
    before = [0, 0]
    if getattr(layer, "padding", "valid") == "same":
        for i, (n, k, s) in enumerate(zip(in_hw, (kh, kw), (sh, sw))):
            before[i] = max((math.ceil(n / s) - 1) * s + k - n, 0) // 2  # TensorFlow's "same": the extra pixel after
    return Geometry(
        (g.rf[0] + (kh - 1) * g.jump[0], g.rf[1] + (kw - 1) * g.jump[1]),
        (g.jump[0] * sh, g.jump[1] * sw),
        (g.start[0] - before[0] * g.jump[0], g.start[1] - before[1] * g.jump[1]),
        g.exact,
    )


def geometry(model: Any, g: Geometry | None = None) -> Geometry:
    """The receptive field geometry of a functional ``model``'s (single) output on its input
    (nested models followed; merges take the largest field, the earliest start)."""
    import keras

    from tlkit import _keras_compat as _kc
    from tlkit.inspection import own_node

    g = g or Geometry((1, 1), (1, 1), (0, 0))
    geo: dict[int, Geometry] = {id(t): g for t in model.inputs}
    for layer in model.layers:
        node = own_node(model, layer) or _kc.inbound_nodes(layer)[0]
        ins = _kc.node_input_tensors(node)
        known = [geo[id(t)] for t in ins if id(t) in geo]
        if not ins or not known:
            continue
        merged = Geometry(
            tuple(max(k.rf[i] for k in known) for i in range(2)),  # type: ignore[arg-type]
            tuple(max(k.jump[i] for k in known) for i in range(2)),  # type: ignore[arg-type]
            tuple(min(k.start[i] for k in known) for i in range(2)),  # type: ignore[arg-type]
            all(k.exact for k in known),
        )
        shape = ins[0].shape
        in_hw = (int(shape[1] or 1), int(shape[2] or 1)) if len(shape) == 4 else (1, 1)
        out = geometry(layer, merged) if isinstance(layer, keras.Model) else _step(layer, merged, in_hw)
        for t in node.outputs:
            geo[id(t)] = out
    return geo[id(model.outputs[0])]


# --- the strongest activations ---------------------------------------------------------------


@dataclass
class Strongest:
    """Per image and channel: the largest value (``values`` [N, C]) and where (``positions`` [N, C, 2])."""

    values: np.ndarray
    positions: np.ndarray
    map_hw: tuple[int, int]

    def channel_order(self) -> np.ndarray:
        """Channels by their largest value over all images, strongest first (ties: lower index first)."""
        best = self.values.max(axis=0)
        return np.lexsort((np.arange(best.size), -best))

    def top_images(self, channel: int, top: int) -> list[int]:
        """The ``top`` images where ``channel`` is strongest, strongest first (ties: earlier image first)."""
        v = self.values[:, channel]
        return [int(i) for i in np.lexsort((np.arange(v.size), -v))[:top]]


def strongest(model: Any, images: np.ndarray, batch_size: int = 16) -> Strongest:
    """Run ``model`` (pixels -> a feature map [N, h, w, C]) and keep each image's strongest value per channel."""
    import keras

    values, positions, hw = [], [], None
    for i in range(0, len(images), batch_size):
        a = keras.ops.convert_to_numpy(model(images[i : i + batch_size], training=False))
        if a.ndim != 4:
            raise ConfigError(
                f"the layer's output has shape {tuple(a.shape[1:])}, not a feature map (height, width, channels); "
                f"choose a convolutional layer (`tlkit inspect NAME` lists them)"
            )
        n, h, w, c = a.shape
        hw = (h, w)
        flat = a.reshape(n, h * w, c)
        arg = flat.argmax(axis=1)  # the first position on ties (row-major)
        values.append(np.take_along_axis(flat, arg[:, None, :], axis=1)[:, 0, :])
        positions.append(np.stack([arg // w, arg % w], axis=-1))
    return Strongest(np.concatenate(values), np.concatenate(positions), hw)  # type: ignore[arg-type]


def input_gradients(model: Any, images: np.ndarray, picks: list[tuple[int, int, int, int]]) -> np.ndarray:
    """d(activation)/d(pixels) for each pick ``(image, y, x, channel)``: the one activation kept,
    all others zero, sent back through ``model``'s backward pass.

    The only backend-specific code in tlkit.visualize: TensorFlow's ``GradientTape``. Picks
    share one batch (inference mode: images do not interact), so one backward pass serves them all.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        backend = keras.backend.backend()
        raise ConfigError(f"tlkit visualize computes gradients with TensorFlow; KERAS_BACKEND is {backend}")
    import tensorflow as tf

    x = tf.constant(np.stack([images[n] for n, _, _, _ in picks]).astype(np.float32))
    index = tf.constant([[k, y, xx, c] for k, (_, y, xx, c) in enumerate(picks)], dtype=tf.int32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        a = model(x, training=False)
        chosen = tf.reduce_sum(tf.gather_nd(a, index))
    return tape.gradient(chosen, x).numpy()


@dataclass
class Pick:
    """One projected activation: channel, value, image index, position on the map, box in pixels."""

    channel: int
    value: float
    image: int
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    projections: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [H, W, 3]

    def to_dict(self, names: list[str]) -> dict[str, Any]:
        out = {
            "channel": self.channel,
            "value": round(self.value, 6),
            "image": names[self.image],
            "position": list(self.position),
            "box": list(self.box),
        }
        for method, p in self.projections.items():
            t, l, b, r = self.box
            inside = float(np.abs(p[t:b, l:r]).sum())
            total = float(np.abs(p).sum())
            out[f"{method}_inside_box"] = round(inside / total, 6) if total else None
        return out


def choose_channels(found: Strongest, channels: int | None, channel: list[int] | None) -> list[int]:
    """``channel`` as given (checked), else the ``channels`` strongest."""
    count = found.values.shape[1]
    if channel:
        bad = [c for c in channel if not 0 <= c < count]
        if bad:
            raise ConfigError(f"--channel {bad[0]} is out of range: the layer has channels 0..{count - 1}")
        return list(dict.fromkeys(channel))
    return [int(c) for c in found.channel_order()[: min(channels or 8, count)]]


def project(
    projectors: dict[str, Any],
    images: np.ndarray,
    found: Strongest,
    geo: Geometry,
    chosen: list[int],
    top: int,
    batch_size: int = 16,
) -> list[list[Pick]]:
    """For each chosen channel, its ``top`` strongest activations (one per image) and their projections."""
    hw = images.shape[1:3]
    rows: list[list[Pick]] = []
    for c in chosen:
        row = []
        for n in found.top_images(c, top):
            y, x = (int(v) for v in found.positions[n, c])
            row.append(Pick(c, float(found.values[n, c]), n, (y, x), geo.box(y, x, hw)))
        rows.append(row)
    flat = [p for row in rows for p in row]
    for method, model in projectors.items():
        for i in range(0, len(flat), batch_size):
            chunk = flat[i : i + batch_size]
            grads = input_gradients(model, images, [(p.image, *p.position, p.channel) for p in chunk])
            for p, g in zip(chunk, grads):
                p.projections[method] = g
    return rows
