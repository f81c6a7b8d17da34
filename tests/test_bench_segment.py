"""benchmarks/bench_segment.py's pure parts: the command lines it runs, the figures it reads, its verdicts."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_segment as bs  # noqa: E402


def test_figures_are_read_from_tlkit_segment_evaluate_json():
    answer = {
        "split": "test",
        "mean_iou": 0.61,
        "pixel_accuracy": 0.93,
        "boundary": {"mean_iou": 0.4, "pixel_accuracy": 0.7},
    }
    assert bs.figures(answer) == {
        "mean_iou": 0.61,
        "pixel_accuracy": 0.93,
        "boundary_iou": 0.4,
        "boundary_accuracy": 0.7,
    }
    assert bs.figures(None) == dict.fromkeys(bs.FIGURES)


def test_verdicts_need_the_ranges_over_seeds_apart():
    s = bs.summary
    rows = {
        "fcn32s/imagenet": {"boundary_iou": s([0.30, 0.31, 0.32]), "mean_iou": s([0.50, 0.52, 0.51])},
        "fcn8s/imagenet": {"boundary_iou": s([0.33, 0.35, 0.40]), "mean_iou": s([0.52, 0.53, 0.55])},
        "fcn32s/none": {"boundary_iou": s([0.1, 0.2, 0.3]), "mean_iou": s([0.2, 0.25, 0.3])},
        "fcn8s/none": {"boundary_iou": s([0.1, 0.2, 0.3]), "mean_iou": s([0.2, 0.25, 0.3])},
    }
    got = {
        (v["option"], v["reference"], v["figure"]): v["verdict"]
        for v in bs.compare(rows, ["fcn32s", "fcn8s"], list(bs.WEIGHTS))
    }
    assert got == {
        ("fcn8s/imagenet", "fcn32s/imagenet", "boundary_iou"): "wins",  # 0.33 > 0.32
        ("fcn8s/imagenet", "fcn32s/imagenet", "mean_iou"): "within spread",  # 0.52 = the reference's best
        ("fcn8s/none", "fcn32s/none", "boundary_iou"): "within spread",
        ("fcn8s/none", "fcn32s/none", "mean_iou"): "within spread",
        ("fcn32s/imagenet", "fcn32s/none", "mean_iou"): "wins",
        ("fcn8s/imagenet", "fcn8s/none", "mean_iou"): "wins",
    }


def test_the_command_lines_follow_the_segment_cli():
    argv = bs.finetune_argv(Path("D"), Path("R"), "n", "unet", "none", 2, bs.QUICK)
    assert argv[:2] == ["segment", "finetune"]
    flags = dict(zip(argv, argv[1:]))
    assert flags["--head"] == "unet" and flags["--weights"] == "none" and flags["--seed"] == "2"
    # Random weights: no stage 1, the whole network at the full lr from the first epoch.
    assert (flags["--unfreeze"], flags["--epochs"], flags["--finetune-lr"]) == ("all", "0", flags["--lr"])
    pretrained = bs.finetune_argv(Path("D"), Path("R"), "n", "unet", "imagenet", 2, bs.QUICK)
    p_flags = dict(zip(pretrained, pretrained[1:]))
    assert (p_flags["--unfreeze"], p_flags["--epochs"], "--finetune-lr" in p_flags) == ("all", "1", False)
    assert argv[argv.index("--input-size") + 1 : argv.index("--input-size") + 3] == ["64", "64"]
    assert bs.evaluate_argv(Path("R/n")) == ["segment", "evaluate", "R/n", "--split", "test", "--json"]
    assert bs.sample_data_argv(Path("D"), bs.FULL)[:3] == ["segment", "sample-data", "D"]


def test_tlkits_own_parser_accepts_every_command_line_the_bench_runs():
    from tlkit.cli.main import build_parser

    parser = build_parser()
    for weights in bs.WEIGHTS:
        args = parser.parse_args(bs.finetune_argv(Path("D"), Path("R"), "n", "fcn8s", weights, 1, bs.FULL))
        assert (args.head, args.weights, args.seed) == ("fcn8s", weights, 1)
        # the same total of epochs for both initialisations
        assert args.epochs + args.finetune_epochs == sum(bs.FULL["epochs"]["imagenet"])
    assert parser.parse_args(bs.evaluate_argv(Path("R/n"))).split == "test"
    assert parser.parse_args(bs.sample_data_argv(Path("D"), bs.QUICK)).train == 16
