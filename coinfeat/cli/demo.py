"""``coinfeat demo``: every stage on the bundled photos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coinfeat.cli.extract import print_summary
from coinfeat.cli.output import (
    common_options,
    wants_progress,
)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="run every stage on the bundled sample of real coin photos",
        description="Run every coinfeat stage on 144 bundled euro-coin photos. Without internet "
        "the ImageNet weights cannot be downloaded: the demo says so and uses random "
        "weights so that the pipeline still runs end to end.",
    )
    p.add_argument("--out", default="artifacts/demo", help="output folder (default artifacts/demo)")
    p.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a .h5 path")
    p.add_argument(
        "--ray",
        action="store_true",
        help="extract on a local Ray instance into a sharded store (needs pip install 'coinfeat[ray]')",
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.demo import run_demo

    result = run_demo(
        args.out,
        weights=args.weights,
        progress=wants_progress(args),
        announce=lambda text: print(text, file=sys.stderr),
        ray=args.ray,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "extract": result.extract.to_dict(),
                    "heads": [h.to_dict() for h in result.heads],
                    "predictions": [p.to_dict() for p in result.predictions],
                    "report": str(result.report),
                    "similar": result.similar.to_dict() if result.similar else None,
                    "finetuned": result.finetuned.to_dict() if result.finetuned else None,
                    "count": result.counted.to_dict() if result.counted else None,
                    "calibration": result.calibration.to_dict() if result.calibration else None,
                    "builtin_count": result.builtin_count.to_dict() if result.builtin_count else None,
                    "enrolment": result.enrolment,
                }
            )
        )
        return 0
    print_summary(result.extract, args)
    print("heads (validation accuracy):")
    for head in result.heads:
        val = f"{head.val_accuracy:.3f}" if head.val_accuracy is not None else "n/a"
        print(f"  {head.type:<10} {val}  fit {head.fit_seconds:.2f}s -> {head.head_dir}")
    print("predictions on test photos (best head):")
    for p in result.predictions:
        top = ", ".join(f"{label} {prob:.0%}" for label, prob in zip(p.labels, p.probabilities))
        print(f"  {Path(p.path).parent.name}/{Path(p.path).name}: {top or p.error}")
    if not result.pretrained:
        print("WARNING: NOT PRETRAINED weights: the accuracies above are meaningless")
    print(f"head comparison report: {result.report}")
    if result.similar:
        nearest = ", ".join(f"{n.label} {n.similarity:.2f}" for n in result.similar.neighbours)
        print(f"most similar to {Path(result.similar.query).name}: {nearest} (contact sheet {result.sheet})")
    if result.finetuned:
        tuned = result.finetuned
        print(
            f"fine-tuned above {tuned.cut} ({tuned.epochs_run} epochs, {tuned.views} views): val balanced "
            f"accuracy {tuned.val_balanced_accuracy:.3f}; backbone {tuned.backbone}, head {tuned.head_dir}"
        )
    if result.counted:
        counted = result.counted
        flag = "" if counted.pretrained else " (NOT PRETRAINED: labels and total are meaningless)"
        print(f"counted {Path(counted.path).name} (truth: 29 coins, 10.10 EUR): {counted.message}{flag}")
        print(f"  annotated photo: {result.counted.annotated}")
    if result.builtin_count:
        print(f"the built-in euro model counted it: {result.builtin_count.message}")
    if result.enrolment:
        grown = result.enrolment
        shown = "; ".join(
            f"{head} {f['new_top1']:.2f} new / {f['old_top1']:.2f} old" for head, f in grown["heads"].items()
        )
        added = ", ".join(grown["new_classes"])
        print(f"enrolled {added} from {grown['shots']} photos each, without refitting: {shown}")
    if result.calibration:
        calibration = result.calibration
        print(
            f"answer sets recalibrated on {calibration.photos} labelled photos (as on your own camera's): "
            f"{calibration.head_dir}"
        )
    print(f"demo finished: outputs in {result.out}")
    return 0
