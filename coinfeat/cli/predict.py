"""``coinfeat predict``: the top classes of photos, with accuracy when they carry labels."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import (
    common_options,
    print_parts,
    shown,
    wants_progress,
)

PRINTED = 20
"""predict prints at most this many photos when --out holds them all."""


def add_parser(commands) -> None:
    from coinfeat.core.extraction.embedder import DEFAULT_TTA, TTA_MODES
    from coinfeat.core.extraction.engines import ENGINES

    p = commands.add_parser(
        "predict",
        help="recognise the coins in photos with a saved head",
        description="Embed each photo with the head's own extractor and print the top-k labels with "
        "their probabilities. Unreadable photos are reported, not fatal. When the photos carry labels "
        "(class folders, a CSV label column) it ends with top-1, top-k and balanced accuracy.",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="photo files, folders (recursive; class folders give labels) or CSV manifests (path,label)",
    )
    p.add_argument(
        "--out", metavar="CSV", help="write one row per photo (top-k labels, names, probabilities)"
    )
    p.add_argument(
        "--head",
        help="head directory made by fit-head or fine-tune, or a built-in model's name "
        "(default: euro, the built-in euro model; `coinfeat models` lists them)",
    )
    p.add_argument("--top-k", type=int, default=5, help="how many labels per photo (default 5)")
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=DEFAULT_TTA,
        help="rotations (default, measured to help): average the embeddings at 0/90/180/270 degrees; "
        "none: one pass, 4x faster",
    )
    p.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine (default auto)")
    p.add_argument(
        "--confidence",
        type=float,
        default=0.9,
        help="level of the answer set shown when one class is not enough (conformal, calibrated on "
        "val by fit-head; default 0.9): on photos like val, the true class is in the set this often",
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.predict import PredictConfig, accuracy, predict_images, write_predictions

    config = PredictConfig(
        top_k=args.top_k,
        tta=args.tta,
        engine=args.engine,
        progress=wants_progress(args),
        confidence=args.confidence,
    )
    results = predict_images(args.images, args.head, config)
    scores = accuracy(results)
    written = write_predictions(results, args.out) if args.out else None
    if args.json:
        document = [r.to_dict() for r in results]
        print(
            json.dumps(
                document
                if scores is None and not written
                else {"predictions": document, "accuracy": scores, "csv": str(written) if written else None}
            )
        )
        return 0 if all(r.error is None for r in results) else 1
    listed = results if len(results) <= PRINTED or not written else results[:PRINTED]
    for r in listed:
        print(r.path + (f"  (label: {r.truth})" if r.truth is not None else ""))
        if r.error:
            print(f"  skipped: {r.error}")
            continue
        for rank, (label, name, prob) in enumerate(zip(r.labels, r.names, r.probabilities), 1):
            print(f"  {rank}. {shown(label, name):<40} {prob:6.1%}")
        if len(r.answer_set) > 1:
            print(f"  answer at {args.confidence:.0%}: {r.answer} (one class is not enough)")
        if r.unknown:
            print(
                f"  probably a coin type this head never learned ({r.unknown_score:.2f} under its threshold)"
            )
        print_parts(r.parts)
    if len(listed) < len(results):
        print(f"... {len(results) - len(listed)} more photos in {written}")
    elif written:
        print(f"written: {written}")
    if scores:
        k = [key for key in scores if key.startswith("top") and key != "top1"]
        topk = f", {k[0]} {scores[k[0]]:.3f}" if k else ""
        print(
            f"accuracy on {scores['photos']} labelled photos: top-1 {scores['top1']:.3f}{topk}, "
            f"balanced {scores['balanced_accuracy']:.3f}"
            + (f" ({scores['unreadable']} unreadable)" if scores["unreadable"] else "")
        )
        if "set_coverage" in scores:
            print(
                f"answer sets at {args.confidence:.0%}: the true class in the set for "
                f"{scores['set_coverage']:.3f} of them, mean size {scores['set_size']:.2f}"
            )
    return 0 if all(r.error is None for r in results) else 1
