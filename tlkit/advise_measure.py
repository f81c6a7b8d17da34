"""The measurements ``tlkit advise`` decides from: a stratified sample, linear probes, the pretrained classifier.

:func:`measure` reads a seeded, stratified sample of the data, runs the pretrained ImageNet
classifier on it (its probabilities and penultimate features), and scores ridge probes on those
features, on raw 16x16 pixels and on the mirrored pixels (:func:`probe_accuracy`); it returns
JSON-ready numbers. What each number means and why is the docstring of :mod:`tlkit.advise`,
which turns them into a situation and a command.
"""

from __future__ import annotations

import shlex
from typing import Any

import numpy as np

from tlkit.errors import DataError

SAMPLE = 200  # images measured; enough for a probe accuracy within a few points
MIN_ABOVE_CHANCE = 0.2  # mirroring is judged only when the pixel probe beats chance by at least this much
PIXEL_SIDE = 16  # the raw-pixel baseline sees images at 16x16 RGB (768 values)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-1, 4, 11))


def _stratified_sample(items: Any, n: int, seed: int) -> Any:
    """Up to ``n`` rows, the same number per class where classes allow (seeded)."""
    per = max(2, n // max(1, items["label"].nunique()))
    parts = [g.sample(min(len(g), per), random_state=seed) for _, g in items.groupby("label", sort=True)]
    import pandas as pd

    return pd.concat(parts).sort_values("path", kind="stable").reset_index(drop=True)


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """The whole image at ``h`` x ``w`` (:mod:`tlkit.data.resize`'s ``plain`` policy), float32 0..255."""
    from tlkit.data.resize import resize_numpy

    return resize_numpy(rgb, (h, w), "plain")


def probe_accuracy(
    X: np.ndarray, y: np.ndarray, *, seed: int = 0, test_also: np.ndarray | None = None
) -> tuple[float, float | None]:
    """Cross-validated accuracy of a standardised ridge classifier on ``X``.

    With ``test_also`` (rows aligned with ``X``, e.g. the same images mirrored), also the
    accuracy of the same fold models on those rows of each test fold; else ``None``.
    """
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y).min()))
    if folds < 2:
        raise DataError("every class needs at least 2 images in the sample to cross-validate a probe")
    accs, also = [], []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        clf = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=RIDGE_ALPHAS)).fit(X[tr], y[tr])
        accs.append(float((clf.predict(X[te]) == y[te]).mean()))
        if test_also is not None:
            also.append(float((clf.predict(test_also[te]) == y[te]).mean()))
    return float(np.mean(accs)), (float(np.mean(also)) if also else None)


def measure(
    data: str,
    *,
    base: str = "efficientnet_lite0",
    sample: int = SAMPLE,
    seed: int = 0,
    cache_dir: str | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Everything :func:`advise` decides from (see the module docstring), as JSON-ready data."""
    import tlkit
    from tlkit.data import pipeline as tldata
    from tlkit.data.images import ImageError, load_rgb

    spec = tlkit.get_spec(base)  # unknown names fail before anything is read
    if not spec.has_imagenet or spec.num_classes != 1000:
        raise DataError(
            f"advise needs a base with an ImageNet classifier; {spec.name} has none. Bases that do: "
            + ", ".join(s.name for s in tlkit.list_models() if s.has_imagenet)
        )
    source = tldata.resolve(data, cache_dir=cache_dir)
    if source.kind != "files":
        raise DataError(
            "advise reads image files (a folder, a CSV manifest or builtin:); for TFDS data, "
            "export the images to a folder first"
        )
    items = source.items
    multi = bool(getattr(source, "multi_label", False))
    if multi:  # positives per label; a seeded plain sample (label combinations are too many to stratify)
        import pandas as pd

        from tlkit.data.multilabel import label_counts

        counts = pd.Series(label_counts(items, source.classes), index=source.classes)
        picked = items.sample(min(sample, len(items)), random_state=seed).sort_values("path", kind="stable")
    else:
        counts = items.groupby("label").size().reindex(source.classes, fill_value=0)
        picked = _stratified_sample(items, sample, seed)
    images, labels, bad = [], [], []
    for path, label_id in zip(picked["path"], picked["label_ids" if multi else "label_id"]):
        try:
            images.append(load_rgb(path))
            labels.append(tuple(label_id) if multi else int(label_id))
        except ImageError as exc:
            bad.append({"path": path, "reason": exc.reason})
    if len(images) < 4:
        raise DataError(
            f"only {len(images)} readable images in the sample of {data}; check it with "
            f"`tlkit check-data {shlex.quote(data)}`"
        )
    y = _multi_hot(labels, len(source.classes)) if multi else np.asarray(labels)
    heights = np.array([im.shape[0] for im in images])
    widths = np.array([im.shape[1] for im in images])

    probs, feats = _pretrained_outputs(spec, images, batch_size)
    pixels = np.stack([_resize(im, PIXEL_SIDE, PIXEL_SIDE) for im in images]).reshape(len(images), -1)
    mirrored = np.stack([_resize(im[:, ::-1], PIXEL_SIDE, PIXEL_SIDE) for im in images]).reshape(len(images), -1)
    if multi:
        feat_acc, pixel_acc, mirrored_acc, chance = one_vs_rest_probes(feats, pixels, mirrored, y, seed=seed)
    else:
        feat_acc, _ = probe_accuracy(feats, y, seed=seed)
        pixel_acc, mirrored_acc = probe_accuracy(pixels, y, seed=seed, test_also=mirrored)
        chance = 1.0 / len(np.unique(y))
    above = pixel_acc - chance

    from tlkit.imagenet import class_names

    names = class_names()
    top1 = probs.argmax(axis=1)
    ids, freq = np.unique(top1, return_counts=True)
    order = np.argsort(-freq, kind="stable")[:3]
    extra = {}
    if multi:
        extra = {
            "positives": {c: int(n) for c, n in counts.items()},
            "labels_per_image": round(float(items["label_ids"].map(len).mean()), 4),
        }
    return {
        "data": data,
        "base": spec.name,
        "description": source.description,
        "multi_label": multi,
        **extra,
        "images": int(len(items)),
        "classes": len(source.classes),
        "per_class": {"median": float(np.median(counts)), "min": int(counts.min()), "max": int(counts.max())},
        "sample": {"images": len(images), "seed": seed, "unreadable": bad},
        "image_size": {
            "median_height": float(np.median(heights)),
            "median_width": float(np.median(widths)),
            "min_side": int(min(heights.min(), widths.min())),
            "max_side": int(max(heights.max(), widths.max())),
        },
        "base_input": list(spec.input_shape[:2]),
        "probe": {
            "features": round(feat_acc, 4),
            "pixels": round(pixel_acc, 4),
            "gain": round(feat_acc - pixel_acc, 4),
            "layer": spec.resolve_layer("penultimate"),
            "features_dim": int(feats.shape[1]),
            "pixels_dim": int(pixels.shape[1]),
        },
        "mirror": {
            "pixels": round(pixel_acc, 4),
            "pixels_on_mirrored": round(float(mirrored_acc), 4),
            "chance": round(chance, 4),
            # share of the above-chance accuracy kept on mirrored images; None: too near chance to tell
            "retained": (round(float(mirrored_acc - chance) / above, 4) if above >= MIN_ABOVE_CHANCE else None),
        },
        "imagenet": {
            "mean_top1_prob": round(float(probs.max(axis=1).mean()), 4),
            "frequent_classes": [
                {"name": names[ids[i]], "fraction": round(float(freq[i]) / len(top1), 3)} for i in order
            ],
        },
    }


def _multi_hot(label_ids: list[tuple[int, ...]], num_classes: int) -> np.ndarray:
    out = np.zeros((len(label_ids), num_classes), dtype=np.int64)
    for i, ids in enumerate(label_ids):
        out[i, list(ids)] = 1
    return out


def one_vs_rest_probes(
    feats: np.ndarray, pixels: np.ndarray, mirrored: np.ndarray, y: np.ndarray, *, seed: int = 0
) -> tuple[float, float, float, float]:
    """Multi-label data (``y``: multi-hot ``[N, C]``): :func:`probe_accuracy` of one binary probe per label
    (present / absent), averaged over the labels with at least 2 images on each side in the sample.

    Returns (features accuracy, pixels accuracy, pixels on mirrored images, chance); chance is the mean
    share of each label's larger side (what always answering it scores).
    """
    fa, pa, ma, ch = [], [], [], []
    for c in range(y.shape[1]):
        yc = y[:, c].astype(int)
        if min(int(yc.sum()), int(len(yc) - yc.sum())) < 2:
            continue
        fa.append(probe_accuracy(feats, yc, seed=seed)[0])
        p, mp = probe_accuracy(pixels, yc, seed=seed, test_also=mirrored)
        pa.append(p)
        ma.append(float(mp))
        ch.append(max(yc.mean(), 1 - yc.mean()))
    if not fa:
        raise DataError("no label has at least 2 images with it and 2 without it in the sample; advise cannot probe")
    return float(np.mean(fa)), float(np.mean(pa)), float(np.mean(ma)), float(np.mean(ch))


def _pretrained_outputs(spec: Any, images: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ImageNet probabilities, penultimate features) of the pretrained classifier at its own input size."""
    import keras

    import tlkit
    from tlkit.models.factory import with_preprocessing

    net = tlkit.build(spec.name, weights="imagenet")
    both = keras.Model(net.inputs, [net.output, net.get_layer(spec.resolve_layer("penultimate")).output])
    # Raw pixels in, preprocessing inside: the graph tlkit.build(..., include_preprocessing=True) gives.
    both = with_preprocessing(both, spec.preprocessing)
    side_h, side_w = spec.input_shape[:2]
    probs, feats = [], []
    for start in range(0, len(images), batch_size):
        x = np.stack([_resize(im, side_h, side_w) for im in images[start : start + batch_size]])
        p, f = both.predict_on_batch(x)
        probs.append(np.asarray(p, dtype=np.float64))
        feats.append(np.asarray(f, dtype=np.float32).reshape(len(x), -1))
    return np.concatenate(probs), np.concatenate(feats)
