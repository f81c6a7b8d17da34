"""Small data, similar to ImageNet: penultimate (FC7-style) features + a linear classifier.

With few images per class, finetuning a network overfits; when the data resembles
ImageNet, the pretrained network's top features already describe it. So run the network
once over the images, keep the penultimate layer's activations, and train a linear
classifier (logistic regression / linear SVM, cross-validated) on them.
The default data, builtin:faces (200 25x25 faces and non-faces), is what `tlkit advise`
calls small and similar.

    python recipes/features_linear.py [--data DIR] [--layer fc7 --base vgg16]
    tlkit extract --base efficientnet_lite0 --layer penultimate --data builtin:faces \
        --input-size 64 64 --out F.parquet && tlkit probe F.parquet --out probe/
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from absl import app, flags

from tlkit.features.extract import extract
from tlkit.features.probe import probe

flags.DEFINE_string("data", "builtin:faces", "folder of class subfolders, CSV manifest, or builtin:NAME")
flags.DEFINE_string("base", "efficientnet_lite0", "pretrained network")
flags.DEFINE_string("layer", "penultimate", "layer to tap: penultimate, fc7 (VGG/AlexNet), avg_pool, or a raw name")
flags.DEFINE_integer("input_size", 64, "square input side (the faces are 25x25: 224 would add no detail)")
flags.DEFINE_float("min_accuracy", 0.9, "fail below this held-out accuracy")
flags.DEFINE_string("workdir", None, "output folder (default: a new temporary folder)")
flags.DEFINE_bool("smoke", False, "tiny run for CI: logistic regression only, 3 folds")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-features-"))
    size = (FLAGS.input_size, FLAGS.input_size)

    # 1. One pass of the frozen pretrained network; rows keep path, label and train/val split.
    res = extract(FLAGS.base, [FLAGS.layer], FLAGS.data, workdir / "features.parquet", input_size=size, force=True)
    print(f"features: {res.rows} images x {res.dims[FLAGS.layer]} values in {res.seconds:.1f} s -> {res.path}")

    # 2. A linear classifier on the train rows, regularisation chosen by cross-validation;
    #    accuracy measured on the held-out rows.
    kinds = ("logreg",) if FLAGS.smoke else ("logreg", "svm")
    m = probe(res.path, workdir / "probe", kinds=kinds, cv=3 if FLAGS.smoke else 5)
    print(
        f"{m['probe']['chosen']}: cross-validated {m['cv_accuracy']:.3f}, held-out {m['top1']:.3f} "
        f"on {m['count']} images; confusion matrix {workdir / 'probe' / 'confusion.png'}"
    )

    if m["top1"] < FLAGS.min_accuracy:
        raise SystemExit(f"FAILED: held-out accuracy {m['top1']:.3f} < {FLAGS.min_accuracy}")
    print("ok")


if __name__ == "__main__":
    app.run(main)
