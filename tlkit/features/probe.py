"""Linear probes on extracted features: logistic regression and linear SVM (scikit-learn).

scikit-learn does this better than code we would write: well-tested solvers,
standardisation and cross-validated regularisation search in a few lines. The
trained probe can be attached to the tapped network as a Dense head
(:func:`attach_head`), so it exports and serves like any finetuned model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlkit._io import write_json_atomic
from tlkit.errors import AlreadyExistsError, DataError, WeightsError

C_GRID = {"logreg": [0.001, 0.01, 0.1, 1.0], "svm": [0.0001, 0.001, 0.01, 0.1]}


def _estimator(kind: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "logreg":
        clf = LogisticRegression(max_iter=3000, random_state=seed)
    elif kind == "svm":
        clf = LinearSVC(max_iter=5000, dual="auto", random_state=seed)
    else:
        raise DataError(f"unknown probe {kind!r}; use logreg or svm")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def train_probe(
    X: np.ndarray, y: np.ndarray, *, kinds: tuple[str, ...] = ("logreg", "svm"), cv: int = 5, seed: int = 0
) -> tuple[Any, dict]:
    """Fit each kind with a cross-validated search over C; return the best fitted pipeline and a summary."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    folds = min(cv, int(np.bincount(y).min())) if len(y) else cv  # classes absent from y: see probe()
    if folds < 2:
        raise DataError("every class needs at least 2 training examples for cross-validation")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    results = {}
    best = None
    for kind in kinds:
        search = GridSearchCV(_estimator(kind, seed), {"clf__C": C_GRID[kind]}, cv=splitter, n_jobs=-1)
        search.fit(X, y)
        results[kind] = {"cv_accuracy": float(search.best_score_), "C": float(search.best_params_["clf__C"])}
        if best is None or search.best_score_ > best[1].best_score_:
            best = (kind, search)
    assert best is not None
    return best[1].best_estimator_, {"chosen": best[0], "folds": folds, "candidates": results}


def probe(
    features: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layer: str | None = None,
    kinds: tuple[str, ...] = ("logreg", "svm"),
    cv: int = 5,
    seed: int = 0,
) -> dict:
    """Train a probe on a features file's train rows, test on its val (or test) rows.

    Writes ``probe.joblib``, ``metrics.json`` and ``confusion.png`` into ``out``.
    """
    import joblib

    from tlkit import evaluate, plots
    from tlkit.features.store import load_features

    feats, rows, meta = load_features(features)
    name = layer or meta["layers"][0]
    if name not in feats:
        raise DataError(f"layer {name!r} is not in {features}; it has {', '.join(feats)}")
    X = feats[name]
    y = rows["label_id"].to_numpy()
    classes = meta["classes"]
    train = (rows["split"] == "train").to_numpy()
    held = (rows["split"].isin(["val", "test"])).to_numpy()
    if not held.any():
        raise DataError(f"{features} has no val or test rows to hold out; extract with --val-split > 0")
    missing = sorted(set(range(len(classes))) - set(y[train].tolist()))
    if missing:
        # A probe never shown a class would have fewer outputs than the classes it is named for.
        raise DataError(f"{features}: no training rows for class(es) {[classes[i] for i in missing]}")
    model, summary = train_probe(X[train], y[train], kinds=kinds, cv=cv, seed=seed)
    probs = probe_scores(model, X[held])
    metrics = evaluate.metrics_from_probs(y[held], probs, classes)
    metrics.update(
        {
            "probe": summary,
            "layer": name,
            "features": str(features),
            "train_count": int(train.sum()),
            "cv_accuracy": summary["candidates"][summary["chosen"]]["cv_accuracy"],
            "source": meta,
        }
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump({"model": model, "layer": name, "classes": classes, "meta": meta}, out / "probe.joblib")
    write_json_atomic(out / "metrics.json", metrics)
    plots.confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        classes,
        out / "confusion.png",
        title=f"{summary['chosen']} probe on {meta['model']} {name}",
    )
    return metrics


def linear_map(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The probe as one affine map on raw features: logits = x @ W + b (standardisation folded in).

    Binary probes (one score) become two logits [0, z], so softmax gives the probe's
    own sigmoid probability for logistic regression.
    """
    scale = model.named_steps["scale"]
    clf = model.named_steps["clf"]
    coef = np.atleast_2d(clf.coef_).astype(np.float64)  # (K or 1, D)
    intercept = np.atleast_1d(clf.intercept_).astype(np.float64)
    std = np.where(scale.scale_ > 0, scale.scale_, 1.0)
    W = (coef / std).T  # (D, K)
    b = intercept - (coef * scale.mean_ / std).sum(axis=1)
    if W.shape[1] == 1:
        W = np.concatenate([np.zeros_like(W), W], axis=1)
        b = np.concatenate([[0.0], b])
    return W.astype(np.float32), b.astype(np.float32)


def probe_scores(model: Any, X: np.ndarray) -> np.ndarray:
    """Class probabilities: logistic regression's own; for the SVM, softmax of its margins."""
    W, b = linear_map(model)
    z = X.astype(np.float64) @ W + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_export_target(out: str | os.PathLike) -> None:
    """Refuse to write a probe's run directory over anything but an empty folder or an earlier
    probe export (a finetuned run there would lose its checkpoints)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AlreadyExistsError(f"--export {out} is a file; name a new folder for the probe's run directory")
    if out.is_dir() and any(out.iterdir()):
        cfg = out / "config.json"
        try:
            is_probe = cfg.is_file() and bool(json.loads(cfg.read_text()).get("probe"))
        except (OSError, ValueError):
            is_probe = False
        if not is_probe:
            raise AlreadyExistsError(
                f"--export {out} exists and is not a probe export (a finetuned run or "
                f"other files would be overwritten); name a new folder"
            )


def check_exportable(meta: dict, source: str | os.PathLike) -> None:
    """Refuse (before any work) to export a probe whose network cannot be rebuilt: features
    from random weights (``--weights none``) whose seed was not recorded."""
    if meta.get("weights", "imagenet") is None and meta.get("weights_seed") is None:
        raise WeightsError(
            f"cannot export a probe on {source}: its features come from random weights "
            f"(--weights none) whose seed was not recorded, so the exported head would sit on "
            f"another random network; extract again (this tlkit records the seed) or use "
            f"pretrained weights (--weights imagenet)"
        )


def attach_head(probe_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Tapped network + the probe as a Dense softmax head, saved as a run directory
    (``best.keras``, ``labels.json``, ``config.json``, ``metrics.json``) for ``tlkit export``.

    The network is rebuilt from the features file's metadata (random weights from their
    recorded seed) and must have the recorded weights' fingerprint: otherwise the head would
    read other features than the probe was trained on, so :class:`WeightsError` is raised
    and nothing is written.
    """
    import joblib
    import keras

    from tlkit.features.extract import build_tap_model

    saved = joblib.load(Path(probe_dir) / "probe.joblib")
    meta = saved["meta"]
    check_exportable(meta, meta.get("data") or probe_dir)
    taps, rebuilt = build_tap_model(
        meta["model"],
        [saved["layer"]],
        weights=meta["weights"],
        input_size=tuple(meta["input_size"]),
        pooling=meta["pooling"],
        seed=meta.get("weights_seed"),
    )
    if meta.get("weights_sha256") and rebuilt["weights_sha256"] != meta["weights_sha256"]:
        raise WeightsError(
            f"cannot export the probe in {probe_dir}: the rebuilt {meta['model']} (weights "
            f"{meta['weights'] or 'none'}, fingerprint {rebuilt['weights_sha256']}) is not the "
            f"network that extracted its features (fingerprint {meta['weights_sha256']}); "
            f"extract and probe again with the weights you mean to export"
        )
    W, b = linear_map(saved["model"])
    head = keras.layers.Dense(W.shape[1], activation="softmax", name="predictions")
    x = taps(taps.inputs[0])[saved["layer"]]
    y = head(x)
    head.set_weights([W, b])
    model = keras.Model(taps.inputs, y, name=f"{meta['model']}_probe")
    out = Path(out)
    check_export_target(out)
    out.mkdir(parents=True, exist_ok=True)
    from tlkit.finetune.recorder import save_checkpoint
    from tlkit.finetune.rundir import BEST

    save_checkpoint(model, out / BEST)  # atomic: a kill never leaves half a checkpoint
    write_json_atomic(out / "labels.json", saved["classes"])
    write_json_atomic(
        out / "config.json",
        {
            "base": meta["model"],
            "data": meta.get("data"),
            "input_size": meta["input_size"],
            "probe": True,
            "layer": saved["layer"],
            "weights": meta["weights"],
            "weights_seed": meta.get("weights_seed"),
            "weights_sha256": rebuilt["weights_sha256"],
        },
    )
    metrics_src = Path(probe_dir) / "metrics.json"
    if metrics_src.exists():
        write_json_atomic(out / "metrics.json", json.loads(metrics_src.read_text()))
    return out
