"""``tlkit extract``: run a pretrained net once over your images and keep a layer's activations."""

from __future__ import annotations

import argparse

from tlkit.cli.commands._argtypes import fraction, image_side, positive_int

NAME = "extract"
HELP = "extract FC7 / penultimate features to Parquet or NPZ for a downstream classifier"
ORDER = 70
LOCAL_BEAM_RUNNERS = ("FnApiRunner", "DirectRunner", "PrismRunner")
BEAM_RESUME = (
    "--resume is for --runner local; a Beam pipeline reruns whole (--force replaces its "
    "shards), and its runner retries failed work itself"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default="efficientnet_lite0", help="registry name of the pretrained net")
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        help="layer to tap (alias fc6/fc7/pool5/avg_pool/penultimate or a raw name); repeatable",
    )
    p.add_argument("--data", required=True, help="folder, CSV manifest, builtin:NAME, or a tlkit prepare folder")
    p.add_argument(
        "--out",
        required=True,
        help="output file, .parquet or .npz, local or gs://BUCKET/... / s3://BUCKET/... (built locally, uploaded "
        "whole when complete); locked while extract runs (a second process on it is refused)",
    )
    p.add_argument("--weights", default="imagenet", help="'imagenet', a weights file, or 'none'")
    p.add_argument(
        "--pooling",
        choices=["avg", "max", "none"],
        default="avg",
        help="how convolutional maps become vectors (none = flatten)",
    )
    p.add_argument("--input-size", nargs=2, type=image_side, metavar=("H", "W"))
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--chunk-rows", type=positive_int, default=1024, help="rows per written chunk")
    p.add_argument("--val-split", type=fraction, default=0.2)
    p.add_argument(
        "--multi-label",
        action="store_true",
        help="label folders as multi-label data: an image in several label folders (a hard link, a symlink or "
        "the same bytes) is one row, its label the names joined with | (a CSV 'labels' column needs no flag)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the train/val split and, with --weights none, of the random weights (recorded)",
    )
    p.add_argument(
        "--runner",
        choices=["local", "beam"],
        default="local",
        help="local: this process (chunked, resumable); beam: an Apache Beam pipeline writing "
        'OUT-SSSSS-of-NNNNN.parquet shards (pip install "tlkit[beam]")',
    )
    p.add_argument(
        "--beam-args",
        default="",
        help="Beam pipeline flags, quoted as one string (default: the local FnApiRunner with "
        '--direct_num_workers=2; e.g. "--runner=DataflowRunner --project=P --region=R '
        '--temp_location=gs://B/tmp")',
    )
    p.add_argument("--resume", action="store_true", help="skip images already in the output")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output (the old file stays until the new one is complete)",
    )


def _run_beam(args: argparse.Namespace) -> int:
    import shlex

    from tlkit.errors import ConfigError
    from tlkit.features.beam_extract import extract_beam

    if args.resume:
        raise ConfigError(BEAM_RESUME)
    if args.multi_label:
        raise ConfigError("--multi-label is not read by --runner beam; extract label folders with the local runner")
    res = extract_beam(
        args.base,
        args.layer,
        args.data,
        args.out,
        weights=None if args.weights == "none" else args.weights,
        pooling=args.pooling,
        input_size=tuple(args.input_size) if args.input_size else None,
        batch_size=args.batch_size,
        val_split=args.val_split,
        seed=args.seed,
        pipeline_args=shlex.split(args.beam_args),
        force=args.force,
    )
    shown = getattr(args, "shown_out", args.out)
    print(
        f"wrote {res.rows} rows in {len(res.shards)} shards ({res.seconds:.1f} s) next to {shown}"
        + (f"; skipped {res.skipped_files} bad files (see {shown}.skipped.csv)" if res.skipped_files else "")
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from tlkit._lock import output_lock
    from tlkit.storage.remote import check_scheme, is_remote, local_path

    check_scheme(args.out)
    if is_remote(args.out):
        return _run_remote(args)
    args.out = local_path(args.out)  # file:///a/b is /a/b
    # The output's lock first, before TensorFlow or a model is loaded: a second process on the same
    # --out is refused at once, naming the holder's PID.
    with output_lock(args.out):
        return _run_beam(args) if args.runner == "beam" else _run_local(args)


def _run_remote(args: argparse.Namespace) -> int:
    """``--out gs://...`` or ``s3://...``: extracted into a local staging folder, then published whole
    (:mod:`tlkit.features.remote_out`); the lock object and the bucket check come before any model work."""
    from tlkit.errors import ConfigError
    from tlkit.features.remote_out import staged_extract_out

    url = args.out
    if args.resume and args.runner == "beam":
        raise ConfigError(BEAM_RESUME)
    if args.runner == "beam":
        import shlex

        flags = shlex.split(args.beam_args)
        runner = next((a.split("=", 1)[1] for a in flags if a.startswith("--runner=")), None)
        if "--runner" in flags[:-1]:  # "--runner NAME", two words
            runner = flags[flags.index("--runner") + 1]
        from tlkit.features.beam_store_io import forced

        cluster = runner not in (None, *LOCAL_BEAM_RUNNERS)
        if (cluster or forced()) and url.startswith("gs://"):
            # A cluster's workers share no disk with this machine: weights, images and shards go through the
            # bucket itself, the shards written by Beam's own GCS file system (tlkit.features.beam_store_io).
            from tlkit.storage.outputs import remote_output_lock

            with remote_output_lock(url):
                args.shown_out = url
                return _run_beam(args)
        if cluster:
            # The shards are staged in this machine's temporary folder: a cluster's workers cannot write there.
            raise ConfigError(
                f"--out {url} with --runner beam works with Beam's local runners ({', '.join(LOCAL_BEAM_RUNNERS)}) "
                f"or with gs:// paths, not {runner} on {url.split('://')[0]}://: its workers cannot write into this "
                "machine's staging folder; write --out to gs:// or to a folder every worker mounts"
            )
    with staged_extract_out(url, beam=args.runner == "beam", resume=args.resume, force=args.force) as local:
        args.out = str(local)
        args.shown_out = url
        return _run_beam(args) if args.runner == "beam" else _run_local(args)


def _run_local(args: argparse.Namespace) -> int:
    from tlkit.features.extract import extract

    res = extract(
        args.base,
        args.layer,
        args.data,
        args.out,
        weights=None if args.weights == "none" else args.weights,
        pooling=args.pooling,
        input_size=tuple(args.input_size) if args.input_size else None,
        batch_size=args.batch_size,
        chunk_rows=args.chunk_rows,
        resume=args.resume,
        force=args.force,
        val_split=args.val_split,
        seed=args.seed,
        multi_label=args.multi_label,
    )
    dims = ", ".join(f"{k}: {v}" for k, v in res.dims.items())
    shown = getattr(args, "shown_out", None) or res.path
    print(
        f"wrote {res.rows} rows ({res.new_rows} new, {res.images_per_second:.1f} images/s; {dims}) to {shown}"
        + (f"; skipped {res.skipped_files} bad files (see {shown}.skipped.csv)" if res.skipped_files else "")
    )
    return 0
