"""``coinfeat fit-head``: train a head on cached vectors, or add photos to a k-NN head."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import (
    common_options,
    drop_conflicts_option,
    wants_progress,
)
from coinfeat.core.errors import CoinfeatError


def add_parser(commands) -> None:
    from coinfeat.core.heads import head_types

    types = head_types()
    listing = "; ".join(
        f"{name}: {cls.summary} (params: {', '.join(f'{k}={v}' for k, v in cls.defaults.items())})"
        for name, cls in types.items()
    )
    p = commands.add_parser(
        "fit-head",
        help="train a classifier head on cached vectors (seconds)",
        description="Train a head on the train split of a feature store (the val split drives early "
        "stopping) and save it with the fingerprint of the features it learned from. "
        "With --add, embed new labelled photos and add them to a fitted head (as coinfeat enrol) "
        "without refitting.",
        epilog=f"Head types: {listing}",
    )
    p.add_argument("--type", choices=list(types), help="head type (required unless --add or --convert)")
    p.add_argument("--features", help="feature store made by extract-features")
    p.add_argument("--out", help="head directory (default artifacts/heads/<dataset>/<type>)")
    p.add_argument(
        "--param",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="head parameters, e.g. --param index=ivfpq nlist=1024 (several at once, or repeated)",
    )
    p.add_argument("--use-augmented", action="store_true", help="also train on cached augmented views")
    p.add_argument(
        "--class-conditional",
        action="store_true",
        help="calibrate the answer sets (predict --confidence) per class: rare classes get their "
        "coverage too, at the cost of larger sets",
    )
    drop_conflicts_option(p)
    p.add_argument(
        "--add", metavar="DATA", help="labelled photos (class folders) to add to --head: as `coinfeat enrol`"
    )
    p.add_argument("--head", help="with --add: the fitted head to extend; with --calibrate: any head")
    p.add_argument(
        "--calibrate",
        metavar="DATA",
        help="recalibrate --head's answer sets on every labelled photo of DATA, e.g. some of your own "
        "photos (class folders or any dataset layout, embedded with the head's extractor; or a store made "
        "with it): the sets then hold their confidence on photos like those; keep other photos aside "
        "to test on",
    )
    p.add_argument(
        "--convert",
        metavar="HEAD",
        help="rewrite a head saved by coinfeat 0.1 as a pickle as plain arrays (only for heads you made: "
        "loading a pickle can run code)",
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.fit import FitConfig, convert_head, enrol_photos, fit_head, parse_params

    if args.convert:
        print(f"converted {convert_head(args.convert)}: it now holds no pickle")
        return 0
    if args.calibrate:
        return _calibrate(args)
    if args.add:
        if not args.head:
            raise CoinfeatError("--add needs --head DIR, the fitted head to extend")
        result = enrol_photos(args.head, args.add, progress=wants_progress(args))
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            print(
                f"added {result.photos} photo(s) to {args.head}; new classes: {', '.join(result.new_classes)}"
            )
        return 0
    if not args.features or not args.type:
        raise CoinfeatError("--type and --features DIR are required (a store made by extract-features)")
    config = FitConfig(
        params=parse_params(args.param),
        use_augmented=args.use_augmented,
        drop_conflicts=args.drop_conflicts,
        class_conditional=args.class_conditional,
    )
    result = fit_head(args.features, args.type, args.out, config)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    val = f", val accuracy {result.val_accuracy:.3f}" if result.val_accuracy is not None else ""
    print(
        f"fitted {result.type} head on {result.train} vectors ({len(result.classes)} classes) in "
        f"{result.fit_seconds:.2f}s{val} -> {result.head_dir}"
    )
    if result.answer_sets:
        print(f"  answer sets calibrated on {result.answer_sets} val photos (predict --confidence)")
    else:
        print("  no answer sets: val has too few photos to calibrate them")
    if args.drop_conflicts:
        print(f"  left out {result.dropped_conflicts} vector(s) of photos filed under another label too")
    if not result.pretrained:
        print("  WARNING: trained on NOT PRETRAINED features: accuracy is meaningless")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from coinfeat.fit import calibrate_head

    if not args.head:
        raise CoinfeatError("--calibrate needs --head DIR, the fitted head whose answer sets to recalibrate")
    result = calibrate_head(
        args.head, args.calibrate, class_conditional=args.class_conditional, progress=wants_progress(args)
    )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"answer sets of {result.head_dir} recalibrated on {result.photos} photos of {result.store}")
    if result.left_out:
        print(f"  left out {result.left_out} photo(s) of classes the head does not know")
    return 0
