"""``coinfeat count``: every coin of a whole photo and the money."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import (
    common_options,
    shown,
    wants_progress,
)


def add_parser(commands) -> None:
    from coinfeat.core.answer_sets import DEFAULT_CONFIDENCE
    from coinfeat.core.extraction.embedder import DEFAULT_TTA, TTA_MODES
    from coinfeat.core.extraction.engines import ENGINES
    from coinfeat.core.images.crop import MARGIN
    from coinfeat.counting.count import CROP_MODES, DEFAULT_THRESHOLD

    p = commands.add_parser(
        "count",
        help="find every coin in a whole photo, identify each, and total the money",
        description="Find the coins of each photo (circles, OpenCV), crop each from the full-resolution "
        "photo, identify all crops with the head in one batch, estimate the photo's scale from the "
        "coins' sizes and re-weigh each coin's classes by its diameter, then total the face values per "
        "currency. Coins below the threshold are 'unknown' and not counted.",
        epilog="Euro diameters and values are built in (labels such as 1c, 50c, 2e, '2 Euro', "
        "'1 Cent,Euro,spain'); other coins need --sizes and/or values in their labels or --values.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos of coins lying flat (files or folders)")
    p.add_argument(
        "--head",
        help="head directory made by fit-head or fine-tune, or a built-in model's name "
        "(default: euro, the built-in euro model; `coinfeat models` lists them)",
    )
    p.add_argument("--sizes", metavar="FILE", help='JSON label -> diameter in mm, e.g. {"10 Kroner": 23.35}')
    p.add_argument(
        "--no-sizes",
        action="store_true",
        help="use the classifier's answer only (a weak head can mislead the scale estimate)",
    )
    p.add_argument(
        "--values",
        metavar="FILE",
        help='JSON label -> {"value": 0.5, "currency": "EUR"} (a bare number means euro); '
        "default: read from the labels",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="a coin whose best probability is below P is unknown "
        f"(default: the head's, else {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=DEFAULT_TTA,
        help="test-time rotations as predict (default rotations)",
    )
    p.add_argument(
        "--crop",
        choices=CROP_MODES,
        default="auto",
        help="how coins are cropped: as the head's training photos frame them (auto, measured by fit-head), "
        "each coin filling its crop (coin), or one physical size for all (fixed; two passes)",
    )
    p.add_argument(
        "--margin",
        type=float,
        help="crop margin on each side, as a share of the coin's diameter (default: measured on the head's "
        f"training photos, else {MARGIN})",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        metavar="LEVEL",
        help="flag coins whose answer set at this level holds more than one class and give the total "
        f"as a range (heads fitted with a val split; default {DEFAULT_CONFIDENCE})",
    )
    p.add_argument("--out", metavar="DIR", help="write an annotated PNG per photo here")
    p.add_argument(
        "--truth",
        metavar="PATH",
        help="score the counts: marked coins (YOLO boxes + classes.txt, LabelMe or COCO JSON) and/or "
        "a per-photo counts CSV (photo, one column per class, value_cents), e.g. "
        "../shared/data/euro-coins-phone; writes report.md and report.html to --out (default "
        "artifacts/reports/count)",
    )
    p.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine (default auto)")
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.counting.count import CountConfig, count_coins

    config = CountConfig(
        sizes=False if args.no_sizes else args.sizes,
        values=args.values,
        threshold=args.threshold,
        tta=args.tta,
        out=args.out,
        margin=args.margin,
        engine=args.engine,
        progress=wants_progress(args),
        crop=args.crop,
        confidence=args.confidence,
    )
    if args.truth:
        return _run_scored(args, config)
    results = count_coins(args.photos, args.head, config)
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        for result in results:
            _print_count(result)
    return 0 if all(r.error is None for r in results) else 1


def _print_count(result) -> None:
    from coinfeat.counting.money import format_range, format_total

    print(f"{result.path}: {result.message}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.coins:
        print(f"  {'#':>3}  {'centre':>11}  {'px':>5}  {'mm':>5}  {'coin':<24} {'prob':>5}  value")
    for c in result.coins:
        mm = f"{c.diameter_mm:5.1f}" if c.diameter_mm else "    -"
        coin = shown(c.label, c.name)
        coin = "unknown" if c.unknown else " or ".join(c.answer_set_names) if c.doubtful else coin
        value = f"{c.value:g} {c.currency}" if c.value is not None and not c.unknown else "-"
        changed = (
            "  (sizes changed it from {})".format(c.classifier["label"])
            if (c.with_sizes and c.with_sizes["label"] != c.classifier["label"])
            else ""
        )
        overlaps = f"  (overlaps {', '.join(map(str, c.overlaps))})" if c.overlaps else ""
        print(
            f"  {c.number:>3}  {c.x:>5.0f},{c.y:<5.0f}  {c.diameter_px:>5.0f}  {mm}  {coin:<24} "
            f"{c.probability:>5.0%}  {value}{changed}{overlaps}"
        )
    if result.coins:
        scale = f"{result.scale_px_per_mm:.2f} px/mm" if result.scale_px_per_mm else "not estimated"
        print(
            f"  total: {format_range(result.total, result.doubts)}   (scale {scale}; "
            f"answer from {result.answer}; {result.crops} crops)"
        )
        if "with_sizes" in result.totals:
            print(f"  classifier alone would say: {format_total(result.totals['classifier'])}")
    if result.unpriced:
        print(f"  no known value for: {', '.join(result.unpriced)} (give --values)")
    if result.dropped:
        print(f"  {len(result.dropped)} circle(s) dropped (duplicates, border cuts, background); see --json")
    if result.annotated:
        print(f"  annotated: {result.annotated}")
    if not result.pretrained:
        print("  WARNING: NOT PRETRAINED features: the labels are meaningless")


def _run_scored(args: argparse.Namespace, config) -> int:
    from coinfeat.counting.scorecard import count_and_score

    report_dir = args.out or "artifacts/reports/count"
    scored = count_and_score(args.photos, args.head, args.truth, config, report_dir=report_dir)
    if args.json:
        print(json.dumps({**scored.scorecard.to_dict(), "report": str(scored.report_html)}))
        return 0
    for note in scored.scorecard.notes:
        print(f"note: {note}")
    for key, value in scored.scorecard.summary().items():
        shown = "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else value)
        print(f"{key:>22}: {shown}")
    print(f"report: {scored.report_md} and {scored.report_html}")
    return 0
