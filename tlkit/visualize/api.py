"""``tlkit visualize`` as a function: load the model and images, search, project, draw."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.errors import ConfigError

MAX_IMAGES = 1000


def image_paths(items: list[str]) -> list[str]:
    """Files as given, and the image files in each folder given (sorted; not recursive)."""
    from tlkit.data.images import is_image_path

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and is_image_path(f))
            if not found:
                raise ConfigError(f"--images {item}: the folder has no image files")
            out += found
        else:
            out.append(item)
    if len(out) > MAX_IMAGES:
        raise ConfigError(f"--images names {len(out)} images; tlkit visualize takes at most {MAX_IMAGES}")
    return out


def load_images(paths: list[str], size: tuple[int, int], resize: str, max_pixels: int) -> np.ndarray:
    """The images decoded (tlkit's decoder: EXIF orientation, RGB) and resized to ``size``; float32 0..255."""
    from tlkit.data.images import load_rgb
    from tlkit.data.resize import check_policy, resize_numpy

    return np.stack([resize_numpy(load_rgb(p, max_pixels=max_pixels), size, check_policy(resize)) for p in paths])


def load_source(source: str, weights: str | None) -> tuple[Any, str | None, str]:
    """(model taking raw pixels, registry name for layer aliases or None, default resize policy).

    ``source`` is a run directory (its ``best.keras``; ``gs://``/``s3://`` runs are downloaded) or a
    registry name, built with ``weights`` (``imagenet`` or ``none``) and its preprocessing in front.
    """
    if "://" in source or os.path.isdir(source):
        if weights is not None:
            raise ConfigError("--weights is for a registry model; a run directory brings its own (best.keras)")
        from tlkit.finetune.evaluation_runs import load_run
        from tlkit.finetune.store_runs import fetched_run

        with fetched_run(source) as local:
            model, _, config = load_run(local)
        return model, config.get("base"), "plain"  # a run's validation images are resized whole
    import tlkit

    spec = tlkit.get_spec(source)  # unknown names: one line listing close ones
    w = "imagenet" if weights is None else weights
    if w not in ("imagenet", "none"):
        raise ConfigError(f"--weights must be imagenet or none, got {w!r}")
    if w == "imagenet" and not spec.has_imagenet:
        raise ConfigError(f"{spec.name} has no ImageNet weights; use --weights none (random) or another model")
    model = tlkit.build(spec.name, weights=None if w == "none" else w, include_preprocessing=True)
    return model, spec.name, "crop"


def resolve_layer(layer: str, base: str | None) -> str:
    """A registry alias (``top``, ``fc7``) to the layer's name; other names unchanged."""
    if base:
        import tlkit

        try:
            return tlkit.get_spec(base).resolve_layer(layer)
        except Exception:  # noqa: BLE001  (a run whose base is no longer registered: names only)
            return layer
    return layer


def visualize(
    model: Any,
    layer: str,
    images: np.ndarray,
    names: list[str],
    out: str | os.PathLike,
    *,
    methods: tuple[str, ...] = ("deconvnet", "guided"),
    top: int = 9,
    channels: int | None = None,
    channel: list[int] | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Project the strongest activations of ``layer`` in ``model`` (raw pixels in) and write the grid.

    Returns a JSON-ready report: the layer, its receptive field, the notes (activations that kept
    their ordinary gradient) and per channel its picks (value, image, position, box, and the share
    of each projection's magnitude inside the box).
    """
    from tlkit.visualize import grid, project, rules

    projectors = {m: rules.projector(model, layer, m) for m in methods}
    first = projectors[methods[0]]
    found = project.strongest(first.model, images, batch_size)
    geo = project.geometry(first.model)
    chosen = project.choose_channels(found, channels, channel)
    rows = project.project({m: p.model for m, p in projectors.items()}, images, found, geo, chosen, top, batch_size)
    notes = []
    if first.plain_activations:
        notes.append(
            f"{len(first.plain_activations)} activation(s) on the way are not ReLUs and kept their ordinary gradient "
            f"(the projection is partly a plain gradient there): {', '.join(first.plain_activations[:5])}"
            + (" ..." if len(first.plain_activations) > 5 else "")
        )
    if not first.replaced:
        notes.append("no ReLU on the way: every method gives the plain gradient of the activation")
    kind = rules.relu_kind(rules.find_layer(model, layer)[-1])
    capped = [p for row in rows for p in row if kind and kind[1] is not None and p.value >= kind[1]]
    if capped:
        notes.append(
            f"{len(capped)} of the activations shown are at {layer}'s cap ({kind[1]:g}, a ReLU6): tied values, "  # type: ignore[index]
            f"the first position wins; the layer before the cap ranks them by their uncapped strength"
        )
    if not geo.exact:
        notes.append("a layer on the way has no fixed receptive field: patches show the whole image")
    title = f"{layer}: {len(chosen)} channels x top {top} of {len(images)} images; patch | {' | '.join(methods)}"
    path = grid.write_grid(rows, images, list(methods), out, title=title)
    return {
        "layer": layer,
        "map_size": list(found.map_hw),
        "channels_in_layer": int(found.values.shape[1]),
        "receptive_field": list(geo.rf),
        "stride": list(geo.jump),
        "methods": list(methods),
        "relus_replaced": len(first.replaced),
        "notes": notes,
        "channels": [{"channel": row[0].channel, "picks": [p.to_dict(names) for p in row]} for row in rows if row],
        "picture": str(path),
        "picture_size": list(grid.grid_size(len(rows), (1 + len(methods)) * max((len(r) for r in rows), default=0))),
    }
