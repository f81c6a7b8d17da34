"""Figures of depth (how many layers the notes say a network has), of how many VGG16 images fit in
5 GB, and of the All-CNN family's parameter counts, for :mod:`tlkit.seed_numbers`.

Depth is counted as the papers and the notes count it: "by layers we only count weighted layers,
conv and fc", along the longest path from the input to the classifier (a branch that runs beside
others, such as an Inception module's four or a ResNet's projection shortcut, adds its longest
branch only). ``tlkit inspect`` prints it (``totals.depth``), with pooling layers counted too in
``totals.depth_with_pooling`` (GoogLeNet's paper: 22 layers with parameters, 27 with pooling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlkit.seed_figures_conv import NOTES_CASES, SLIDES, Add

if TYPE_CHECKING:
    from tlkit.seed_numbers import Tables

NOTES_STUDY = "study notes on the classic CNN papers: VGG Net"
ALLCNN_TABLE = (
    "Konstantinov, *Modern ConvNet architectures* (2017), the All-CNN paper's CIFAR-10 table (Springenberg et al. 2015)"
)


def _depth_figures(t: Tables, add: Add) -> None:
    """AlexNet 8, VGG 16 and 19, GoogLeNet 22 (27 with pooling), ResNet 152."""
    for key, claim, source, name, stated in [
        ("alexnet_depth", "AlexNet: 8 layers", SLIDES, "alexnet", 8),
        ("vgg16_depth", "VGG-16 contains 16 CONV/FC layers", NOTES_CASES, "vgg16", 16),
        (
            "vgg19_depth",
            "VGG 16 to 19 layers (VGG19: 19); by layers we only count weighted layers, conv and fc",
            NOTES_STUDY,
            "vgg19_tlkit",
            19,
        ),
        ("googlenet_depth", "GoogLeNet: 22 layers", SLIDES, "googlenet", 22),
        ("resnet152_depth", "ResNet: 152 layers on ImageNet", SLIDES, "resnet152_tlkit", 152),
    ]:
        totals = t.get(name)["totals"]
        depth, pooled = totals["depth"], totals["depth_with_pooling"]
        why = "conv and fc layers on the longest path from the input to the classifier"
        if name == "googlenet":
            why = (
                "conv1, conv2's 1x1 and 3x3, two on the longest path of each of the 9 Inception modules, "
                f"the classifier; {pooled} counting the pooling layers, as the paper counts 22 and 27"
            )
        elif name.startswith("resnet"):
            why = "conv1, 3 per bottleneck block x 50 blocks, the classifier; projection shortcuts run beside a block"
        add(
            key,
            claim,
            source,
            stated,
            depth,
            f"{depth} weighted layers ({pooled} with pooling)",
            f"tlkit inspect {name}  (depth line)",
            why,
        )


def _memory_figures(t: Tables, add: Add) -> None:
    """The notes' "5 Gigs of memory, we can store only about 50 images" (VGG16)."""
    from tlkit.memory_budget import budget_from_table

    table = t.get("vgg16")
    forward = 4 * table["totals"]["activations"]  # per image, input included, as the notes' 24M
    fits = 5 * 10**9 // forward
    training = budget_from_table(table, 1, "adam").largest_batch(5 * 10**9)
    add(
        "vgg16_images_in_5gb",
        "VGG16: 5 Gigs of memory, we can store only about 50 images",
        NOTES_STUDY,
        50,
        fits,
        f"{fits} (5 GB / {forward:,} bytes, forward only); training with Adam: {training}",
        "tlkit inspect vgg16 --memory --budget 5GB",
        f"about 50 is 5 GB / (24M x 4 bytes) = {5 * 10**9 // (24 * 10**6 * 4)}, from the wrong 24M; the true "
        f"{forward:,} bytes per image give {fits}; with the backward pass (x2) and Adam's weights, "
        f"gradients and slots (4 x 553 MB) {training} fit",
        unit=10,
    )


def _allcnn_figures(t: Tables, add: Add) -> None:
    """The All-CNN-C family's counts; Strided-CNN-C's "≈1.3M" against the layers the table lists."""
    strided = t.get("allcnn_strided")["totals"]["params"]
    allc = t.get("allcnn_c")["totals"]["params"]
    convpool = t.get("allcnn_convpool")["totals"]["params"]
    extra = allc - strided
    add(
        "allcnn_strided_c_params",
        "Strided-CNN-C: ≈1.3M parameters",
        ALLCNN_TABLE,
        1.3e6,
        strided,
        f"{strided:,}",
        "tlkit inspect allcnn_strided",
        f"the layers the notes list for Strided-CNN-C (Model C with its two max-pools removed and the convs "
        f"before them at stride 2) have {strided:,}, Model C's count, since pools have no parameters; "
        f"≈1.3M is {(1.3e6 - strided) / strided:.0%} high, and near All-CNN-C's {allc:,}, which adds the "
        f"two 3x3 convs (3*3*96*96+96 + 3*3*192*192+192 = {extra:,}): the table likely gave the base and "
        "strided models a count with those layers",
        unit=1e5,
    )
    add(
        "allcnn_convpool_c_params",
        "ConvPool-CNN-C: ≈1.4M parameters",
        ALLCNN_TABLE,
        1.4e6,
        convpool,
        f"{convpool:,}",
        "tlkit inspect allcnn_convpool",
        f"{convpool:,} rounds to 1.4M",
        unit=1e5,
    )
    add(
        "allcnn_c_params",
        "ALL-CNN-C: ≈1.4M parameters",
        ALLCNN_TABLE,
        1.4e6,
        allc,
        f"{allc:,}",
        "tlkit inspect allcnn_c",
        f"{allc:,} rounds to 1.4M",
        unit=1e5,
    )


DEPTH_FIGURES = (_depth_figures, _memory_figures, _allcnn_figures)
