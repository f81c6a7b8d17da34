"""``--cache-features``: stage 1 on the frozen base's pooled features, computed once.

With the base frozen, stage 1 sees the same base output for an image every epoch (without
augmentation), so the base runs once per image and the head trains on the vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def cached_head_data(
    model: Any,
    source: Any,
    size: tuple,
    batch_size: int,
    channels: int,
    log: Callable[[str], None],
    *,
    skip_undecodable: bool = False,
    label_classes: int | None = None,
) -> tuple[Any, tuple, tuple | None]:
    """The head as its own model (sharing the full model's layers) and the frozen base's
    pooled features for train and val, computed once: stage 1 then costs a few matrix
    products per epoch instead of a forward pass through the base. ``label_classes``: one-hot
    float labels (``--label-smoothing``), as :func:`tlkit.data.pipeline.make_dataset` gives them."""
    import keras
    import numpy as np

    from tlkit.data import pipeline as tldata

    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    out = {}
    for split in ("train", "val"):
        if tldata.dataset_size(source, split) == 0:
            out[split] = None
            continue
        t0 = time.time()
        ds = tldata.make_dataset(
            source,
            split,
            image_size=size,
            batch_size=batch_size,
            training=False,
            channels=channels,
            skip_undecodable=skip_undecodable,
            label_classes=label_classes,
        )
        xs, ys = [], []
        for x, y in ds:
            xs.append(np.asarray(pooled.predict_on_batch(x)))
            ys.append(np.asarray(y))
        out[split] = (np.concatenate(xs), np.concatenate(ys))
        log(f"cached {split} features: {out[split][0].shape} in {time.time() - t0:.1f} s")
    names = [l.name for l in model.layers]
    head_layers = model.layers[names.index("avg_pool") + 1 :]
    inputs = keras.Input(shape=(int(pooled.output_shape[-1]),), name="features")
    x = inputs
    for layer in head_layers:
        x = layer(x)
    return keras.Model(inputs, x, name="head"), out["train"], out["val"]
