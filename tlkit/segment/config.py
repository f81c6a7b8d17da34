"""``SegmentConfig``: the settings of a segmentation run (``tlkit segment finetune``), and their checks.

Fields carry their command-line form as :class:`tlkit.finetune.config.FinetuneConfig`'s do
(``_opt`` metadata), so ``tlkit segment finetune`` derives its flags from them. The class
attributes below the fields are what :func:`tlkit.finetune.stages.train_and_finish` (reused for
the staged training) asks a config that a segmentation run does not offer. No Keras, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tlkit.errors import ConfigError
from tlkit.finetune.config import RUNS_DIR, _opt, _slug
from tlkit.finetune.rundir import RunDir

HEADS = ("fcn32s", "fcn16s", "fcn8s", "unet")  # tlkit.segment.models.HEADS, known here without Keras
OUTPUT_STRIDES = (8, 16, 32)


@dataclass
class SegmentConfig:
    """Everything that defines a segmentation run; written to the run's ``config.json``."""

    data: str = field(
        metadata={
            "help": "folder with images/ and masks/ (palette or index PNGs, 255 = ignore; optional classes.txt), "
            "or train/, val/, test/ subfolders each holding them, or a CSV with columns image,mask[,split]",
            "kind": "str",
            "required": True,
        }
    )
    base: str = _opt("efficientnet_lite0", "registry name of the pretrained base (with --resume: the run's own)")
    head: str = _opt("fcn8s", "decoder: FCN-32s, -16s, -8s (skip fusion) or a U-Net-style decoder", choices=HEADS)
    output_stride: int = _opt(
        32, "stride of the base's last features: 16 or 8 by dilated convolutions where the base allows", kind="int"
    )
    weights: str | None = _opt("imagenet", "'imagenet', a local weights file, or 'none'", none_word=True)
    name: str | None = _opt(None, "run name", shown="BASE-HEAD-DATA")
    runs_dir: str = _opt(str(RUNS_DIR), "parent folder of run directories")
    input_size: tuple[int, int] | None = _opt(
        None,
        "input height and width, multiples of 32 (images and masks are resized to it)",
        kind="image_side",
        metavar=("H", "W"),
        shown="the base's own",
    )
    batch_size: int = _opt(8, "images per training step", kind="positive_int")
    epochs: int = _opt(5, "stage 1 epochs (decoder only, base frozen)", kind="non_negative_int")
    finetune_epochs: int = _opt(5, "stage 2 epochs (top blocks of the base unfrozen)", kind="non_negative_int")
    unfreeze: str = _opt("2", "top blocks of the base to unfreeze in stage 2: N, or 'all'; 0 = decoder only")
    lr: float = _opt(1e-3, "stage 1 learning rate", kind="positive_float")
    finetune_lr: float | None = _opt(None, "stage 2 learning rate", kind="positive_float", shown="lr / 10")
    optimizer: str = _opt("adam", "optimizer; sgd uses --momentum", choices=("adam", "sgd"))
    momentum: float = _opt(0.9, "SGD momentum", kind="fraction")
    weight_decay: float = _opt(0.0, "decoupled weight decay", kind="non_negative_float")
    augment: bool = _opt(
        True,
        "random scaled crop and horizontal flip, on the image and its mask together; --no-augment: none",
        kind="flag",
        flag="--no-augment",
    )
    train_batchnorm: bool = _opt(False, "also train BatchNorm in stage 2 (on batch statistics)", kind="flag")
    val_split: float = _opt(
        0.2, "fraction of the pairs held out for validation when the data has no val split", kind="fraction"
    )
    seed: int = _opt(0, "seed of the split, augmentation and initialisation", kind="int")
    deterministic: bool = _opt(
        True,
        "bit-reproducible ops on CPU: a run stopped (Ctrl-C, SIGTERM, SIGKILL) and continued with --resume "
        "gives the uninterrupted run's history; --no-deterministic trades exactness for speed",
        kind="flag",
        flag="--no-deterministic",
    )
    mixed_precision: str = _opt("auto", "float16 compute: auto = on with a GPU", choices=("auto", "on", "off"))

    # What tlkit.finetune.stages asks of a config, fixed for segmentation runs (not flags).
    find_lr: ClassVar[bool] = False
    tensorboard: ClassVar[bool] = False
    cache_features: ClassVar[bool] = False
    task: ClassVar[str] = "segmentation"  # config.json says so: tlkit evaluate/export tell the runs apart

    def run_dir(self) -> Path:
        """``runs_dir/name`` (default name: BASE-HEAD-DATA); a name that is not one folder is a RunDirError."""
        name = self.name if self.name is not None else f"{self.base}-{self.head}-{_slug(self.data)}"
        return RunDir.at(self.runs_dir, name).path


def cli_fields() -> list[dataclasses.Field]:
    """The fields in flag order (every one is a flag of ``tlkit segment finetune``)."""
    return list(dataclasses.fields(SegmentConfig))


def check_config(cfg: SegmentConfig) -> None:
    """Flag values that make a run impossible, refused before TensorFlow loads."""
    import tlkit

    if "://" in str(cfg.runs_dir):
        raise ConfigError(f"--runs-dir {cfg.runs_dir}: segmentation runs are written to a local folder")
    tlkit.get_spec(cfg.base)  # unknown base: the error lists close names
    if cfg.head not in HEADS:
        raise ConfigError(f"--head {cfg.head}: use one of {', '.join(HEADS)}")
    if cfg.output_stride not in OUTPUT_STRIDES:
        raise ConfigError(f"--output-stride {cfg.output_stride}: use 32, 16 (one dilated stage) or 8 (two)")
    if cfg.unfreeze != "all" and not str(cfg.unfreeze).isdigit():
        raise ConfigError(f"--unfreeze must be a number of blocks or 'all', got {cfg.unfreeze!r}")
    if cfg.input_size is not None:
        h, w = (int(v) for v in cfg.input_size)
        if h % 32 or w % 32:
            raise ConfigError(
                f"--input-size {h} {w}: segmentation inputs must be multiples of 32 (the decoder upsamples "
                f"by 32); try --input-size {max(32, round(h / 32) * 32)} {max(32, round(w / 32) * 32)}"
            )
    from tlkit.segment.models import check_request  # no Keras: a base that cannot dilate is refused here

    check_request(cfg.base, cfg.head, 2, cfg.input_size, cfg.output_stride)
    if cfg.epochs == 0 and (cfg.finetune_epochs == 0 or cfg.unfreeze == "0"):
        raise ConfigError(
            "nothing to train: pass --epochs N for the decoder and/or --finetune-epochs N with --unfreeze N|all"
        )


def default_input_size(base: str) -> tuple[int, int]:
    """The base's own input size, rounded down to a multiple of 32 (224 stays 224, 299 becomes 288)."""
    import tlkit

    h, w = tlkit.get_spec(base).input_shape[:2]
    return max(32, (int(h or 224) // 32) * 32), max(32, (int(w or 224) // 32) * 32)
