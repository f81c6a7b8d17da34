"""More data, similar to ImageNet: train a new head, then finetune the top blocks.

Stage 1 trains only the new classifier on the frozen pretrained body (a random head
would send large gradients into good features). Stage 2 unfreezes the top blocks and
trains on at a tenth of the learning rate; the lower blocks (edges, textures) stay as
ImageNet taught them, and BatchNorm keeps its ImageNet statistics. The default data is
builtin:faces, the builtin closest to ImageNet; with a few thousand images per class of
your own, this is the recipe (`tlkit advise` says when).

    python recipes/finetune_top_blocks.py [--data DIR] [--unfreeze 2]
    tlkit finetune --base efficientnet_lite0 --data builtin:faces --input-size 64 64 \
        --epochs 3 --finetune-epochs 3 --unfreeze 2 --no-augment
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from absl import app, flags

from tlkit.finetune.pipeline import FinetuneConfig, finetune

flags.DEFINE_string("data", "builtin:faces", "folder of class subfolders, CSV manifest, or builtin:NAME")
flags.DEFINE_string("base", "efficientnet_lite0", "pretrained base")
flags.DEFINE_integer("input_size", 64, "square input side")
flags.DEFINE_integer("epochs", 3, "stage 1 epochs (new head only)")
flags.DEFINE_integer("finetune_epochs", 3, "stage 2 epochs (top blocks unfrozen, lr / 10)")
flags.DEFINE_string("unfreeze", "2", "top blocks unfrozen in stage 2")
flags.DEFINE_float("lr", 1e-3, "stage 1 learning rate")
flags.DEFINE_float("min_accuracy", 0.85, "fail below this validation accuracy")
flags.DEFINE_string("workdir", None, "output folder (default: a new temporary folder)")
flags.DEFINE_bool("smoke", False, "tiny run for CI: 1 + 1 epochs")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-top-blocks-"))
    cfg = FinetuneConfig(
        data=FLAGS.data,
        base=FLAGS.base,
        runs_dir=str(workdir / "runs"),
        name="top_blocks",
        input_size=(FLAGS.input_size, FLAGS.input_size),
        epochs=1 if FLAGS.smoke else FLAGS.epochs,
        finetune_epochs=1 if FLAGS.smoke else FLAGS.finetune_epochs,
        unfreeze=FLAGS.unfreeze,
        lr=FLAGS.lr,
        augment=None,
    )  # 25x25 faces: random crops would keep too little of each face
    metrics = finetune(cfg, force=True, quiet=FLAGS.smoke)
    run = cfg.run_dir()
    print(
        f"validation accuracy {metrics['top1']:.3f} on {metrics['count']} images; run directory {run} "
        f"(curves.png, confusion.png, best.keras)"
    )
    if metrics["top1"] < FLAGS.min_accuracy:
        raise SystemExit(f"FAILED: validation accuracy {metrics['top1']:.3f} < {FLAGS.min_accuracy}")
    print("ok")


if __name__ == "__main__":
    app.run(main)
