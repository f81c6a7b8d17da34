"""Classify photos with a pretrained ImageNet model: no training at all.

Before training anything, ask the best ImageNet model what it already sees. The photos are
scikit-image's samples (a cat, a cup of coffee, an astronaut), written to --workdir.

    python recipes/classify_photos.py                      # the three sample photos
    python recipes/classify_photos.py --images a.jpg,b.png # your own
    tlkit predict --base efficientnet_lite0 a.jpg           # the same from the command line
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

import tlkit
from tlkit.data.images import load_rgb
from tlkit.data.resize import resize_numpy
from tlkit.imagenet import decode_predictions

flags.DEFINE_string("base", "efficientnet_lite0", "registry name of a base with ImageNet weights")
flags.DEFINE_list("images", [], "image files to classify (default: scikit-image's sample photos)")
flags.DEFINE_integer("top", 3, "classes shown per image")
flags.DEFINE_string("workdir", None, "folder for the sample photos (default: a new temporary folder)")
flags.DEFINE_bool("smoke", False, "tiny run for CI: the cat photo only")
FLAGS = flags.FLAGS

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}
EXPECTED = {"chelsea": CATS, "coffee": {"espresso", "cup", "coffee mug"}}  # what a good ImageNet model says


def sample_photos(folder: Path, names: list[str]) -> list[Path]:
    """scikit-image's sample photos as JPEG files (what a user would have)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(path, quality=95)
        paths.append(path)
    return paths


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-classify-"))
    paths = [Path(p) for p in FLAGS.images] or sample_photos(
        workdir / "photos", ["chelsea"] if FLAGS.smoke else ["chelsea", "coffee", "astronaut"]
    )

    spec = tlkit.get_spec(FLAGS.base)
    # The 1000-class ImageNet classifier, taking raw 0..255 pixels (preprocessing inside).
    model = tlkit.build(spec.name, weights="imagenet", include_preprocessing=True)
    # The ImageNet evaluation view: the central 87.5% square, resized as every tlkit command does.
    x = np.stack([resize_numpy(load_rgb(p), spec.input_shape[:2], "crop") for p in paths])
    probs = model.predict(x, verbose=0)

    for path, preds in zip(paths, decode_predictions(probs, top=FLAGS.top)):
        print(f"{path.name}: " + ", ".join(f"{p.name} {p.prob:.3f}" for p in preds))
        expected = EXPECTED.get(path.stem) if not FLAGS.images else None
        if expected and preds[0].name not in expected:
            raise SystemExit(f"FAILED: {path.name} classified as {preds[0].name!r}, expected one of {sorted(expected)}")
    print("ok: every sample photo got its expected class" if not FLAGS.images else "ok")


if __name__ == "__main__":
    app.run(main)
