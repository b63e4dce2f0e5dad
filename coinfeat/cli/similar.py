"""``coinfeat similar``: nearest coins, duplicates and the unknown-coin threshold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coinfeat.cli.output import (
    common_options,
    print_parts,
    shown,
)
from coinfeat.core.errors import CoinfeatError


def add_parser(commands) -> None:
    from coinfeat.core.extraction.embedder import TTA_MODES
    from coinfeat.core.index import INDEX_KINDS

    p = commands.add_parser(
        "similar",
        help="show the most similar coins; find duplicates and unknown coins",
        description="For each QUERY (a stored photo's path, or any image file, embedded with the store's "
        "own extractor) list the most similar photos of the collection. --duplicates lists "
        "near-identical pairs (label conflicts, train/test leaks); --calibrate chooses the "
        "similarity below which a query is answered 'no similar coin in the collection'.",
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="image file(s) or stored photo path(s)")
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument("--k", type=int, default=8, help="neighbours per query (default 8)")
    p.add_argument("--split", choices=["train", "all"], default="train", help="which photos to search")
    p.add_argument("--exclude-self", action="store_true", help="leave a stored query out of its own results")
    p.add_argument(
        "--threshold",
        type=float,
        help="similarity below which the answer is 'unknown' (default: the calibrated one, if "
        "any); with --duplicates, the pair threshold (default 0.97)",
    )
    p.add_argument(
        "--tta", choices=TTA_MODES, default="none", help="rotations: average 4 rotations of a query"
    )
    p.add_argument("--index", choices=INDEX_KINDS, default="flat", help="FAISS index (flat is exact)")
    p.add_argument("--sheet", help="write a contact sheet PNG (query and neighbours, or duplicate pairs)")
    p.add_argument("--duplicates", action="store_true", help="list near-duplicate pairs of the collection")
    p.add_argument("--out", help="with --duplicates: folder for duplicates.csv and duplicates.png")
    p.add_argument("--calibrate", action="store_true", help="calibrate the unknown-coin threshold on val")
    p.add_argument(
        "--target-fmr",
        type=float,
        default=0.05,
        help="with --calibrate: target false-match rate for unknown coins (default 0.05)",
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat import similar

    if args.calibrate:
        record = similar.calibrate_unknown(args.features, target_false_match=args.target_fmr)
        print(
            json.dumps(record)
            if args.json
            else f"unknown-coin threshold {record['threshold']:.4f}: false-match rate on val "
            f"{record['false_match_rate_val']:.3f} (target {args.target_fmr}), known coins accepted "
            f"{record['known_accepted_rate_val']:.3f}; saved with the store"
        )
        return 0
    if args.duplicates:
        return _print_duplicates(
            similar.find_duplicates(args.features, threshold=args.threshold or 0.97), args
        )
    if not args.queries:
        raise CoinfeatError("give at least one QUERY image, or --duplicates, or --calibrate")
    config = similar.SimilarConfig(
        k=args.k,
        split=args.split,
        exclude_self=args.exclude_self,
        threshold=args.threshold,
        tta=args.tta,
        index=args.index,
    )
    results = similar.find_similar(args.queries, args.features, config)
    for n, result in enumerate(results):
        if args.sheet and not result.error:
            sheet = Path(args.sheet)
            similar.similar_sheet(
                result, sheet if len(results) == 1 else sheet.with_stem(f"{sheet.stem}_{n + 1}")
            )
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        for result in results:
            _print_similar(result)
    return 0 if all(r.error is None for r in results) else 1


def _print_similar(result) -> None:
    print(result.query)
    if result.error:
        print(f"  skipped: {result.error}")
        return
    if result.unknown:
        print(f"  no similar coin in the collection (best similarity below {result.threshold:.3f})")
    for n in result.neighbours:
        print(f"  {n.rank:>2}. {shown(n.label, n.name):<30} {n.similarity:6.3f}  {n.path}")
    print_parts(result.parts, "neighbours say ")


def _print_duplicates(pairs, args: argparse.Namespace) -> int:
    from coinfeat import similar

    csv, sheet = similar.write_duplicates(pairs, args.features, args.out, args.sheet)
    if args.json:
        print(
            json.dumps(
                {
                    "pairs": len(pairs),
                    "label_conflicts": int(pairs["label_conflict"].sum()),
                    "cross_split": int(pairs["cross_split"].sum()),
                    "csv": str(csv),
                    "sheet": str(sheet),
                }
            )
        )
        return 0
    print(
        f"{len(pairs)} near-duplicate pair(s): {int(pairs['label_conflict'].sum())} with different labels "
        f"(likely label noise), {int(pairs['cross_split'].sum())} across splits (leakage)"
    )
    for row in pairs.head(20).itertuples(index=False):
        flag = "LABEL CONFLICT " if row.label_conflict else "LEAK " if row.cross_split else ""
        print(f"  {flag}{row.similarity:.3f}  {row.name_a}: {row.path_a}  ~  {row.name_b}: {row.path_b}")
    print(f"written: {csv}, {sheet}")
    return 0
