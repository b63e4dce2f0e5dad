"""``coinfeat enrol``: add a coin type to a fitted head from a few photos, without refitting."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import common_options, wants_progress


def add_parser(commands) -> None:
    p = commands.add_parser(
        "enrol",
        help="add new coin types to a fitted head from a few photos each, in seconds, without refitting",
        description="Embed the photos with the head's own extractor (into HEAD/enrolled/<name>/, a store: "
        "a re-run embeds nothing twice) and add their classes to the head: k-NN stores them, centroid "
        "adds prototypes, logreg and dense learn only the new classes' output weights against a "
        "memory of the old classes (prototypes kept with every head). 3-10 photos of each side of a "
        "coin are enough to start; `compare --enrol K --shots N` measures it on your collection.",
        epilog="PHOTOS is a folder of class folders (one per new type), or with --label a folder or "
        "files of one new type. Labels already known to the head get the photos as more examples "
        "(k-NN, centroid). Answer sets are kept when their score does not depend on the classes and "
        "removed when they were calibrated per class (recalibrate with fit-head --calibrate).",
    )
    p.add_argument("photos", metavar="PHOTOS", help="class folders, or one type's photos with --label")
    p.add_argument("--head", required=True, help="head directory made by fit-head or fine-tune")
    p.add_argument("--label", help='the class of every photo in PHOTOS, e.g. "2 Euro,Euro,vatican"')
    p.add_argument("--out", metavar="DIR", help="write the grown head here (default: the head, in place)")
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.fit import enrol_photos

    result = enrol_photos(
        args.head, args.photos, label=args.label, out=args.out, progress=wants_progress(args)
    )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    new = ", ".join(result.new_classes) or "none (more photos of known classes)"
    print(
        f"enrolled {result.photos} photo(s) in {result.seconds:g}s into {result.head_dir}; new classes: {new}"
    )
    print(f"  the head now knows {result.classes} classes; photos embedded into {result.store}")
    if result.answer_sets == "removed":
        print("  note: its answer sets were calibrated per class and are removed: fit-head --calibrate")
    return 0
