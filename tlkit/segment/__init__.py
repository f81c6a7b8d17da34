"""Semantic segmentation: FCN-32s/16s/8s and U-Net heads on any registered base, finetuned on
image/mask pairs (``tlkit segment``). Each module has one job; none is imported by ``tlkit --help``."""
