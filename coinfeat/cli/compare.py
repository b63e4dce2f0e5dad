"""``coinfeat compare``: several heads fitted and scored alike, and their report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coinfeat.cli.output import (
    common_options,
    drop_conflicts_option,
    int_list,
    pair,
)
from coinfeat.core.errors import CoinfeatError


def add_parser(commands) -> None:
    from coinfeat.core.data.leakage import TWIN_THRESHOLD

    p = commands.add_parser(
        "compare",
        help="train and evaluate several heads alike; write a report",
        description="Fit every chosen head on the same train split of a feature store (val for early "
        "stopping), evaluate all on the test split, and write report.md, a self-contained "
        "report.html, metrics.json, per_class.csv, predictions.parquet and PNG plots.",
    )
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument("--heads", default="dense,logreg,knn,centroid", help="comma-separated head types")
    p.add_argument("--top-k", default="1,3,5", help="comma-separated k values (default 1,3,5)")
    p.add_argument("--out", help="report folder (default artifacts/reports/<dataset>)")
    p.add_argument(
        "--param",
        action="extend",
        nargs="+",
        metavar="HEAD.KEY=VALUE",
        help="head parameters, e.g. knn.k=5 knn.weights=distance (several at once, or repeated)",
    )
    p.add_argument(
        "--load",
        action="append",
        metavar="NAME=DIR",
        help="also evaluate an already fitted head (repeatable)",
    )
    p.add_argument("--use-augmented", action="store_true", help="train on cached augmented views too")
    drop_conflicts_option(p)
    p.add_argument(
        "--twin-threshold",
        type=float,
        default=TWIN_THRESHOLD,
        metavar="COS",
        help="an evaluated photo whose vector has cosine >= COS with a training photo's counts as its "
        f"near-identical twin (identical files always do); default {TWIN_THRESHOLD}, as --duplicates. "
        "Every figure is reported on all, clean and twin photos; the advice uses clean ones",
    )
    p.add_argument(
        "--test-features",
        metavar="STORE",
        help="evaluate on every photo of another dataset's store (same extractor): will the heads work "
        "on photos from another camera or collection? Labels are matched by id or display name",
    )
    p.add_argument(
        "--versus",
        metavar="STORE",
        help="another store of the same photos (e.g. --precision int8, or a fine-tuned store): the same "
        "heads are fitted and scored on it too and the report shows both side by side",
    )
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="also run stratified group-aware K-fold cross-validation",
    )
    p.add_argument(
        "--label-parts",
        metavar="REGEX",
        help="regex with named groups splitting labels into parts, e.g. "
        "'(?P<denomination>[^,]+),(?P<currency>[^,]+),(?P<country>.+)'",
    )
    p.add_argument(
        "--class-groups",
        metavar="GROUPS",
        help="also report accuracy over groups of classes, 'a,b;c,d', or 'euro' for its design "
        "families (1c,2c,5c; 10c,20c,50c; 1e,2e: one photo shows no scale, and their common sides "
        "differ only by the numeral)",
    )
    p.add_argument(
        "--open-set",
        type=int,
        default=0,
        metavar="K",
        help="hold K classes (seeded) out of training as unknown coins and report how well each head's "
        "unknown-coin scores (best probability, similarity to what it learned) tell them: AUROC, and "
        "the share rejected when 95%% of known coins are accepted",
    )
    p.add_argument(
        "--enrol",
        type=int,
        default=0,
        metavar="K",
        help="hold K classes out of training, then enrol them from --shots photos each without refitting; "
        "reports top-1 on the new and the old classes, and what a full refit gives",
    )
    p.add_argument("--shots", type=int, default=5, metavar="N", help="photos per enrolled class (default 5)")
    p.add_argument(
        "--confusion-top",
        type=int,
        metavar="N",
        help="confusion matrices show only the N most confused classes",
    )
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.compare import CompareConfig, compare_heads, default_report_dir
    from coinfeat.compare.report import leakage_line, write_report

    config = CompareConfig(
        heads=[h.strip() for h in args.heads.split(",") if h.strip()],
        top_k=int_list(args.top_k, "--top-k"),
        params=head_params(args.param),
        load=dict(pair(item, "--load") for item in args.load or []),
        use_augmented=args.use_augmented,
        cv=args.cv,
        label_parts=args.label_parts,
        class_groups=args.class_groups,
        confusion_top=args.confusion_top,
        versus=args.versus,
        test_features=args.test_features,
        twin_threshold=args.twin_threshold,
        drop_conflicts=args.drop_conflicts,
        open_set=args.open_set,
        enrol=args.enrol,
        shots=args.shots,
    )
    out = Path(args.out) if args.out else default_report_dir(args.features)
    comparison = compare_heads(args.features, config, heads_dir=out / "heads")
    report = write_report(comparison, out)
    if args.json:
        print(
            json.dumps(
                {
                    "report": str(report),
                    "recommended_head": comparison.best.name,
                    "metrics": str(out / "metrics.json"),
                }
            )
        )
        return 0
    for note in comparison.notes:
        print(f"note: {note}")
    print(leakage_line(comparison))
    for r in comparison.results:
        m = r.subsets[comparison.headline]
        tops = " ".join(f"top{k} {m[f'top{k}']:.3f}" for k in config.top_k)
        print(f"{r.name:<10} {tops}  balanced {m['balanced_accuracy']:.3f}  fit {r.fit_seconds:.2f}s")
    if comparison.versus is not None:
        from coinfeat.compare.report import versus_frame

        print(f"side by side with {comparison.versus.store.path} (balanced accuracy):")
        for row in versus_frame(comparison).itertuples(index=False):
            print(f"  {row.head:<10} {row.balanced:.3f} vs {row.balanced_versus:.3f} ({row.difference:+.3f})")
    _print_worst(comparison)
    _print_protocols(comparison)
    print(f"recommended: {comparison.best.name}; report: {report}")
    if not comparison.store.pretrained:
        print("WARNING: NOT PRETRAINED features: these figures are meaningless")
    return 0


def _print_worst(comparison) -> None:
    from coinfeat.compare.tables import WORST_SHOWN, worst_classes_frame

    if len(comparison.best.head.classes_) > WORST_SHOWN:
        worst = worst_classes_frame(comparison, 5)
        print(f"worst classes ({comparison.best.name}), recall: ", end="")
        print(
            "; ".join(
                f"{r['class']} {r['recall']:.2f} (as {r['most often taken for']})"
                for _, r in worst.iterrows()
            )
        )


def _print_protocols(comparison) -> None:
    if comparison.open_set:
        found = comparison.open_set
        held = ", ".join(found["unknown_classes"])
        print(f"unknown coins ({held} held out): AUROC / rejected when 95% of known are accepted")
        for head, scores in found["heads"].items():
            shown = "  ".join(f"{s} {f['auroc']:.3f} / {f['rejected_at_95']:.3f}" for s, f in scores.items())
            print(f"  {head:<10} {shown}")
    if comparison.enrolment:
        found = comparison.enrolment
        new = ", ".join(found["new_classes"])
        print(f"enrolment ({new} from {found['shots']} photos each): top-1 on new / old classes")
        for head, f in found["heads"].items():
            print(
                f"  {head:<10} enrolled {f['new_top1']:.3f} / {f['old_top1']:.3f} "
                f"in {f['enrol_seconds']:.2f}s; refitted {f['refit_new_top1']:.3f} / "
                f"{f['refit_old_top1']:.3f} in {f['refit_seconds']:.1f}s"
            )


def head_params(items: list[str] | None) -> dict[str, dict]:
    from coinfeat.fit import parse_params

    params: dict[str, dict] = {}
    for item in items or []:
        head, dot, rest = item.partition(".")
        if not dot:
            raise CoinfeatError(f"--param {item!r}: expected HEAD.KEY=VALUE, e.g. knn.k=5")
        params.setdefault(head, {}).update(parse_params([rest]))
    return params
