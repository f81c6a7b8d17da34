"""``tlkit visualize``: a layer's strongest activations and their deconvnet / guided-backprop projections."""

from __future__ import annotations

import argparse
import json

from tlkit.cli.commands._argtypes import non_negative_int, positive_int
from tlkit.data.images import MAX_PIXELS  # light: numpy only

NAME = "visualize"
HELP = "a layer's strongest activations projected back to pixels (deconvnet, guided backprop), as a picture"
DESCRIPTION = (
    "For each chosen channel of --layer, the images where it is strongest and, in each, the position "
    "of its largest value. That one activation is kept (all others zero) and sent back to the pixels "
    "(Zeiler & Fergus 2014): deconvnet = the backward pass with each ReLU rectifying the signal and "
    "ignoring its forward mask (max pooling routes to the position that won: the 'switches'); guided "
    "(Springenberg et al. 2015) = ReLUs apply both the rectification and the forward mask. ReLU6 counts "
    "as a ReLU; other activations (swish, sigmoid) keep their ordinary gradient and are named in a note. "
    "The picture has one row per channel: for each of the --top images the patch under the position's "
    "receptive field, then each projection over that patch (grey = 0). Images are resized to the model's "
    "input (--resize; a registry model: center crop, a run: the whole image)."
)
ORDER = 57


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="MODEL_OR_RUN", help="a registry name (see `tlkit models`) or a run directory")
    p.add_argument(
        "--layer", required=True, help="a layer name or the registry's alias (`tlkit inspect NAME` lists layers)"
    )
    p.add_argument("--images", nargs="+", required=True, metavar="IMG_OR_DIR", help="image files and/or folders")
    p.add_argument("--out", required=True, metavar="OUT.png", help="the picture to write")
    p.add_argument("--top", type=positive_int, default=9, help="strongest activations per channel (one per image)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--channels", type=positive_int, default=8, help="how many channels: those with the largest activation"
    )
    which.add_argument(
        "--channel", type=non_negative_int, action="append", metavar="N", help="this channel (repeat for more)"
    )
    p.add_argument("--method", choices=("deconvnet", "guided", "both"), default="both", help="projection rule")
    p.add_argument("--weights", choices=("imagenet", "none"), default=None, help="a registry model's weights")
    p.add_argument("--resize", choices=("crop", "plain"), default=None, help="how images meet the model's input size")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward/backward pass")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, help="refuse larger images (from the header)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from tlkit.visualize import api

    paths = api.image_paths(args.images)  # before the model is built: a wrong path fails in a second
    model, base, resize = api.load_source(args.source, args.weights)
    layer = api.resolve_layer(args.layer, base)
    size = tuple(int(v) for v in model.inputs[0].shape[1:3])
    resize = args.resize or resize
    images = api.load_images(paths, size, resize, args.max_pixels)
    methods = ("deconvnet", "guided") if args.method == "both" else (args.method,)
    report = api.visualize(
        model,
        layer,
        images,
        paths,
        args.out,
        methods=methods,
        top=args.top,
        channels=None if args.channel else args.channels,
        channel=args.channel,
        batch_size=args.batch_size,
    )
    report["resize"] = resize
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"layer {report['layer']}: map {report['map_size'][0]}x{report['map_size'][1]}, "
        f"{report['channels_in_layer']} channels, receptive field {report['receptive_field'][0]}x"
        f"{report['receptive_field'][1]} px, stride {report['stride'][0]}; ReLUs replaced: {report['relus_replaced']}"
    )
    for ch in report["channels"]:
        best = ch["picks"][0]
        print(
            f"channel {ch['channel']:>4}: max {best['value']:.4g} in {best['image']} at {tuple(best['position'])}, "
            f"{len(ch['picks'])} image(s)"
        )
    for note in report["notes"]:
        print(f"note: {note}")
    w, h = report["picture_size"]
    print(f"picture: {report['picture']} ({w}x{h})")
    return 0
