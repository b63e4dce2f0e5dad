"""``coinfeat extract-features``: embed a collection once into a feature store."""

from __future__ import annotations

import argparse
import json
import sys

from coinfeat.cli.output import (
    common_options,
    wants_progress,
)
from coinfeat.core.images.crop import KEPT_WHOLE


def add_parser(commands) -> None:
    from coinfeat.core.extraction.backbones import PRECISIONS
    from coinfeat.core.extraction.engines import ENGINES
    from coinfeat.core.extraction.extract import RUNNERS
    from coinfeat.core.extraction.quantize import DEFAULT_CALIBRATION
    from coinfeat.core.images.annotations import ANNOTATION_FORMATS
    from coinfeat.core.images.crop import CROPS
    from coinfeat.core.images.decode import DEFAULT_IMAGE_SIZE, RESIZE_POLICIES

    p = commands.add_parser(
        "extract-features",
        help="embed every photo of a collection once into a feature store",
        description="Embed every image of DATA with a frozen backbone and cache the vectors in a "
        "store (embeddings.npy + items.parquet + manifest.json). Re-runs embed only new "
        "or changed files; an interrupted run resumes where it stopped.",
        epilog="DATA layouts: DATA/<class>/*.jpg; DATA/{train,val,test}/<class>/*.jpg; or a CSV "
        "with columns path,label[,split] (paths relative to the CSV). A cat_to_name.json "
        "in DATA supplies display names. With --annotations: whole photos with marked coins.",
    )
    p.add_argument("--data", required=True, help="dataset folder or CSV manifest")
    p.add_argument("--out", help="store directory (default: artifacts/features/<dataset name>)")
    p.add_argument(
        "--backbone",
        default="efficientnetb0",
        help="efficientnetb0 (default), mobilenetv2, resnet50, or a .keras model file that "
        "maps 0-255 RGB images to a feature map or vector",
    )
    p.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (default; Keras downloads and caches it), none (random, seeded: "
        "for tests only), or a path to a local .h5 weights file",
    )
    p.add_argument(
        "--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="square input size (default 224)"
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_POLICIES,
        default="pad",
        help="pad to square with the border colour (default: coins are round), centre-crop, or stretch",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default=None,
        help="coin: find the coin each photo is centred on and crop to its rim, so heads learn the "
        "coin rather than the table or how much of the frame it fills (photos under 96 px or with no "
        "coin found are kept whole); coin-balanced (default for a new store): white-balance the photo "
        "first (grey world), then the coin crop; coin-masked: the coin crop with the rest painted grey; "
        "none: the photo as it is (a fixed rig where every photo is taken at one distance). Part of the "
        "fingerprint; a re-run keeps the store's own crop unless given",
    )
    p.add_argument(
        "--engine",
        choices=[*ENGINES, "ray"],
        default="auto",
        help="inference engine: auto (default) is the fastest engine verified equal to Keras "
        "(TFLite+XNNPACK here); 'ray' is deprecated, use --runner ray",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default) or int8: about twice as fast on CPUs with int8 instructions; calibrated "
        "on --calibration train photos and checked against fp32 (cosine, in the summary); int8 and "
        "fp32 vectors never mix",
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=DEFAULT_CALIBRATION,
        metavar="N",
        help=f"with --precision int8: train photos to calibrate on (default {DEFAULT_CALIBRATION})",
    )
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        default="local",
        help="where the work runs: local (this process, default) or ray (Ray actors, local without "
        "--ray-address, into a sharded store)",
    )
    p.add_argument("--ray-address", help="with --runner ray: 'auto' or HOST:PORT of a running Ray cluster")
    p.add_argument("--workers", type=int, default=2, help="with --runner ray: Ray actors (default 2)")
    p.add_argument(
        "--shards", type=int, help="shards of a new store (default: 4 with --runner ray, else one store)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--threads", type=int, help="decode and inference threads (default: all cores)")
    p.add_argument("--limit", type=int, help="embed at most N new images this run")
    p.add_argument("--force", action="store_true", help="discard the store and rebuild it")
    p.add_argument(
        "--group-regex",
        help="regex on the file stem whose first group names photos that "
        "must stay in one split, e.g. '^(.*)_[^_]+$'",
    )
    p.add_argument("--label-names", help="JSON file mapping class folder -> display name")
    p.add_argument("--split", default="70/15/15", help="train/val/test shares when DATA has no splits")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="N",
        help="also cache N augmented views (rotation, flip, zoom, light) of each train photo",
    )
    p.add_argument(
        "--annotations",
        choices=ANNOTATION_FORMATS,
        nargs="?",
        const="auto",
        help="DATA holds whole photos with coins marked (YOLO boxes + classes.txt, LabelMe or COCO "
        "JSON; 'auto' or no value: recognised): each marked coin is cut out as a single-coin photo "
        "(a square 1.3x its box) under --cut-dir and embedded, e.g. as a --test-features store",
    )
    p.add_argument(
        "--cut-dir", help="with --annotations: where the cut coins go (default artifacts/crops/<DATA name>)"
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.core.data.splits import parse_fractions
    from coinfeat.core.extraction.extract import ExtractConfig, extract_features

    engine, runner = args.engine, args.runner
    if engine == "ray":
        print("coinfeat: warning: --engine ray is deprecated; use --runner ray", file=sys.stderr)
        engine, runner = "auto", "ray"
    config = ExtractConfig(
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        resize=args.resize,
        crop=args.crop,
        engine=engine,
        precision=args.precision,
        calibration=args.calibration,
        runner=runner,
        workers=args.workers,
        shards=args.shards,
        ray_address=args.ray_address,
        batch_size=args.batch_size,
        threads=args.threads,
        limit=args.limit,
        force=args.force,
        group_regex=args.group_regex,
        label_names=args.label_names,
        split=parse_fractions(args.split),
        seed=args.seed,
        augment=args.augment,
        annotations=args.annotations,
        cut_dir=args.cut_dir,
        progress=wants_progress(args),
    )
    summary = extract_features(args.data, args.out, config)
    print_summary(summary, args)
    return 0


def print_summary(summary, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary.to_dict()))
        return
    print(
        f"embedded {summary.embedded}, reused {summary.reused}, skipped {summary.skipped} "
        f"(total {summary.total}) in {summary.seconds:.1f}s -> {summary.store}"
    )
    if summary.pending:
        print(f"  {summary.pending} image(s) not embedded yet (--limit): run again to continue")
    if summary.views:
        print(
            f"  {summary.views} augmented view(s) of train photos cached (used by fit-head --use-augmented)"
        )
    if summary.removed:
        print(f"  {summary.removed} item(s) dropped: their files are gone")
    splits = ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items()))
    print(f"  splits: {splits}")
    print(f"  backbone: {summary.backbone}; engine {summary.engine or 'not needed'}; crop {summary.crop}")
    for reason, count in summary.skipped_reasons.items():
        print(f"  skipped {count}: {reason}")
    for reason, count in summary.kept_whole.items():
        print(f"  kept whole {count}: {KEPT_WHOLE[reason]}")
    for note in summary.notes:
        print(f"  note: {note}")
    if not summary.pretrained:
        print("  WARNING: NOT PRETRAINED weights: these vectors are for testing only")
