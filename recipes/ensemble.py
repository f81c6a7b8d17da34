"""An ensemble of finetuned models: average the probabilities of a few runs.

Several finetunings of the same pretrained base that differ only in their random seed
(head initialisation, dropout, batch order) make different mistakes; averaging their
class probabilities usually scores at least as well as the average member. All members
must be validated on the same images, so the split is written once into a CSV manifest
(path,label,split) and every member trains from it.

    python recipes/ensemble.py [--data DIR] [--seeds 0,1,2]
    tlkit evaluate runs/a runs/b runs/c --ensemble   # the same for runs you already have
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from absl import app, flags

from tlkit.data import pipeline as tldata
from tlkit.finetune.evaluation_runs import evaluate_runs
from tlkit.finetune.pipeline import FinetuneConfig, finetune

flags.DEFINE_string("data", "builtin:digits", "folder of class subfolders, CSV manifest, or builtin:NAME")
flags.DEFINE_string("base", "efficientnet_lite0", "pretrained base")
flags.DEFINE_list("seeds", ["0", "1", "2"], "one member per seed")
flags.DEFINE_integer("input_size", 64, "square input side")
flags.DEFINE_integer("epochs", 2, "stage 1 epochs per member")
flags.DEFINE_integer("finetune_epochs", 2, "stage 2 epochs per member (all blocks unfrozen)")
flags.DEFINE_float("lr", 3e-3, "stage 1 learning rate")
flags.DEFINE_float("min_accuracy", 0.9, "fail when the ensemble scores below this")
flags.DEFINE_string("workdir", None, "output folder (default: a new temporary folder)")
flags.DEFINE_bool("smoke", False, "tiny run for CI: 2 members, 30 images per class, 32x32, 3 epochs of the head alone")
FLAGS = flags.FLAGS


def fixed_split_manifest(data: str, out: Path, per_class: int = 0) -> str:
    """The data as a CSV manifest whose split column pins the validation images for every member."""
    items = tldata.resolve(data).items
    if per_class:
        items = items.groupby("label", group_keys=False).head(per_class)
    out.parent.mkdir(parents=True, exist_ok=True)
    items[["path", "label", "split"]].to_csv(out, index=False)
    return str(out)


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="tlkit-ensemble-"))
    smoke = FLAGS.smoke
    manifest = fixed_split_manifest(FLAGS.data, workdir / "split.csv", per_class=30 if smoke else 0)
    side = 32 if smoke else FLAGS.input_size
    seeds = [int(s) for s in FLAGS.seeds][: 2 if smoke else None]

    runs, members = [], {}
    for seed in seeds:
        cfg = FinetuneConfig(
            data=manifest,
            base=FLAGS.base,
            runs_dir=str(workdir / "runs"),
            name=f"seed{seed}",
            input_size=(side, side),
            seed=seed,
            epochs=3 if smoke else FLAGS.epochs,
            finetune_epochs=0 if smoke else FLAGS.finetune_epochs,
            unfreeze="all",
            lr=FLAGS.lr,
            augment=None,
            flip=False,  # the digits' settings; see finetune_deep.py
            cache_features=smoke,
        )  # smoke: head only, on features computed once
        # Each member's metrics are on the pinned validation split, the images the ensemble is scored on.
        members[cfg.run_dir().name] = finetune(cfg, force=True, quiet=True)
        runs.append(str(cfg.run_dir()))

    ens = evaluate_runs(runs, ensemble=True, out=str(workdir / "evaluation"))["ensemble"]
    for run, m in members.items():
        print(f"{run}: top-1 {m['top1']:.3f}")
    mean = sum(m["top1"] for m in members.values()) / len(members)
    print(
        f"ensemble of {len(runs)}: top-1 {ens['top1']:.3f} on {ens['count']} images "
        f"(members' mean {mean:.3f}); confusion matrix in {workdir / 'evaluation'}"
    )

    bound = 0.3 if smoke else FLAGS.min_accuracy  # a smoke member sees 240 images once per stage
    if ens["top1"] < bound:
        raise SystemExit(f"FAILED: ensemble top-1 {ens['top1']:.3f} < {bound}")
    worst = min(m["top1"] for m in members.values())
    if ens["top1"] < worst - 1 / ens["count"]:  # one image of slack: averaging is not a guarantee
        raise SystemExit(f"FAILED: the ensemble ({ens['top1']:.3f}) scores below its worst member ({worst:.3f})")
    print("ok")


if __name__ == "__main__":
    app.run(main)
