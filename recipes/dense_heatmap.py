"""Dense evaluation of a large image: where in the picture is each class?

The ImageNet classifier is converted to a fully convolutional network (its dense head
becomes a 1x1 convolution), so one forward pass over an image larger than 224x224 gives
a map of class scores, one per 224-pixel window every 32 pixels (about 10x faster than
cropping the windows; benchmarks/results/dense.json). The default image is a scene made
of two scikit-image photos side by side, a cat on the left and a cup of coffee on the
right, so the maps can be checked: the cat's scores must sit left, the coffee's right.

    python recipes/dense_heatmap.py [--image big.jpg] [--scales 256,384]
    tlkit dense-eval --base efficientnet_lite0 --image big.jpg --scales 256,384 --heatmap h.png
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

from tlkit.data.images import load_rgb
from tlkit.dense.evaluator import DenseEvaluator
from tlkit.plots import score_map_overlay

flags.DEFINE_string("base", "efficientnet_lite0", "registry name of an ImageNet classifier")
flags.DEFINE_string("image", None, "image file (default: the cat-and-coffee scene)")
flags.DEFINE_list("scales", ["256", "384"], "shorter-side sizes to evaluate at")
flags.DEFINE_string("workdir", None, "output folder (default: a new temporary folder)")
flags.DEFINE_bool("smoke", False, "tiny run for CI: one scale (256)")
FLAGS = flags.FLAGS

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}
COFFEE = {"espresso", "cup", "coffee mug"}


def scene(path: Path) -> Path:
    """chelsea (300x451) and coffee resized to the same height, side by side: 300x901 pixels."""
    from skimage import data

    cat, coffee = data.chelsea(), data.coffee()
    h = cat.shape[0]
    coffee = np.asarray(
        Image.fromarray(coffee).resize((round(coffee.shape[1] * h / coffee.shape[0]), h), Image.Resampling.BICUBIC)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([cat, coffee], axis=1)).save(path, quality=95)
    return path


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-dense-"))
    image = Path(FLAGS.image) if FLAGS.image else scene(workdir / "scene.jpg")
    scales = [256] if FLAGS.smoke else [int(s) for s in FLAGS.scales]

    ev = DenseEvaluator.from_name(FLAGS.base)  # pretrained, converted to fully convolutional
    result = ev.evaluate(str(image), scales=scales, top=5)[0]
    print(
        f"{image.name} {result.image_size[0]}x{result.image_size[1]} at scales {scales}: "
        + ", ".join(f"{c.name} {c.score:.3f}" for c in result.top)
    )

    rgb = load_rgb(image)
    best = result.best_map()  # the largest scale: the finest positions
    halves = {}
    for c in result.top[:2]:
        grid = best.window_map(c.index)  # image-aligned, one cell per 32 pixels
        out = score_map_overlay(  # cells no window covers drawn as no data, not as 0
            rgb,
            best.window_map(c.index, fill=np.nan),
            workdir / f"heatmap_{c.name.replace(' ', '_')}.png",
            title=f"{c.name} at scale {best.scale}",
            extent=best.grid_extent(rgb.shape[:2]),
        )
        half = grid.shape[1] // 2
        halves[c.name] = (float(grid[:, :half].mean()), float(grid[:, half:].mean()))
        print(f"  {c.name}: mean score left half {halves[c.name][0]:.3f}, right half {halves[c.name][1]:.3f} -> {out}")
        with Image.open(out) as im:  # the picture must decode
            im.load()

    if not FLAGS.image:
        names = {c.name for c in result.top}
        cat = next((n for n in halves if n in CATS), None)
        coffee = next((n for n in halves if n in COFFEE), None)
        if not (names & CATS and names & COFFEE and cat and coffee):
            raise SystemExit(f"FAILED: expected a cat and coffee among the top two classes, got {list(halves)}")
        if not (halves[cat][0] > 5 * halves[cat][1] and halves[coffee][1] > 5 * halves[coffee][0]):
            raise SystemExit(f"FAILED: the maps do not put the cat left and the coffee right: {halves}")
        print("ok: the cat's scores sit on the left, the coffee's on the right")
    else:
        print("ok")


if __name__ == "__main__":
    app.run(main)
