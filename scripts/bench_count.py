"""Benchmark: the counting scorecard (``coinfeat count --truth``) on both shared sets of whole photos.

* ``euro-coins-photos``: 39 pile photos (12 Mpx, white paper, the shared set's own camera) with
  per-photo counts. The train crops were cut from these very photos, so the head must never have
  seen them: fit it on the euro-coins **test/** folder only (``--piles-head``). truth.csv lists the
  labelled coins; four photos show a coin or three that were never cropped (train_1, 29, 30, 37),
  which the scorecard counts as found too many.
* ``euro-coins-phone``: 150 photos of another phone, table and light (720x960), coins marked with
  boxes: detection precision and recall, class accuracy of matched coins. Use a head fitted on the
  euro-coins **train/** folder only (``--phone-head``); the set is a test set, never tuned on.

One run, same machine, seconds per photo end to end (decode, detection, crops, embedding with TTA,
classification, sizes). The reports (report.md, report.html) are kept in ``--out``.

    python scripts/bench_count.py --piles-head DIR --phone-head DIR [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchlib import write_section

from coinfeat.counting.count import CoinCounter, CountConfig, count_coins
from coinfeat.counting.scorecard import count_and_score

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "piles": (SHARED / "euro-coins-photos" / "train", SHARED / "euro-coins-photos"),
    "phone": (SHARED / "euro-coins-phone" / "photos", SHARED / "euro-coins-phone"),
}
SHOWN = [
    ("photos", "photos"),
    ("coins_true", "true coins"),
    ("coins_found", "coins found"),
    ("detection_precision", "detection precision"),
    ("detection_recall", "detection recall"),
    ("class_accuracy", "class accuracy"),
    ("count_exact", "count exact"),
    ("count_within_one", "count within one"),
    ("median_total_error", "median error of the total"),
    ("total_in_range", "true total within the range"),
    ("doubtful_coins", "coins in doubt (answer set > 1)"),
    ("median_seconds", "s/photo median"),
    ("max_seconds", "s/photo max"),
    ("wall_seconds", "s/photo, whole run (next photos decoded and searched during the network's work)"),
]


def score_set(name: str, head: str, tta: str, out: Path) -> dict[str, float | int | None]:
    photos, truth = SETS[name]
    started = time.perf_counter()
    scored = count_and_score([photos], head, truth, CountConfig(tta=tta), report_dir=out / name)
    wall = time.perf_counter() - started
    seconds = [r.seconds for r in scored.results]
    return {
        **scored.scorecard.summary(),
        "median_seconds": statistics.median(seconds),
        "max_seconds": max(seconds),
        "wall_seconds": wall / len(scored.results),
        "report": str(scored.report_html),
    }


def look_ahead(name: str, head: str, tta: str, photos: int = 24) -> dict[str, float]:
    """Seconds per photo counting the first ``photos`` of a set one at a time, and through
    ``count_coins`` (the next photos decoded and searched on another thread), side by side."""
    paths = sorted(SETS[name][0].glob("*.jpg"))[:photos]
    counter = CoinCounter(head, tta=tta)
    counter.count(paths[0])
    started = time.perf_counter()
    for path in paths:
        counter.count(path)
    alone = (time.perf_counter() - started) / len(paths)
    started = time.perf_counter()
    count_coins(paths, head, tta=tta, progress=False)
    ahead = (time.perf_counter() - started) / len(paths)
    return {"photos": len(paths), "alone": alone, "ahead": ahead}


def render(tta: str, heads: dict[str, str], figures: dict[str, dict], ahead: dict[str, dict]) -> str:
    def shown(value) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "<!-- count:start -->",
        "## Counting coins in whole photos (`scripts/bench_count.py`)",
        "",
        f"The counting scorecard on both shared sets of whole photos, one run, TTA {tta}, 2 cores. "
        f"euro-coins-photos (39 piles, 12 Mpx, counts only: no detection figures) with "
        f"{heads['piles']} (fitted on the euro-coins test folder only); euro-coins-phone (150 photos, "
        f"another phone, boxes) with {heads['phone']} (fitted on the train folder only).",
        "",
        "| figure | euro-coins-photos | euro-coins-phone |",
        "|---|---|---|",
    ]
    for key, words in SHOWN:
        lines.append(f"| {words} | {shown(figures['piles'].get(key))} | {shown(figures['phone'].get(key))} |")
    lines += [
        "",
        "Many photos: `count_coins` decodes and searches the next photo on another thread while the "
        "network works on this one (same answers). Side by side, same head, same run:",
        "",
    ]
    for name, figure in ahead.items():
        lines.append(
            f"- {name}, first {figure['photos']} photos: {figure['alone']:.3f} s/photo one at a time, "
            f"{figure['ahead']:.3f} s/photo looked ahead (x{figure['alone'] / figure['ahead']:.2f}, "
            "including loading the head once)"
        )
    lines.append("<!-- count:end -->")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piles-head", required=True, help="a head fitted on euro-coins/test only")
    parser.add_argument("--phone-head", required=True, help="a head fitted on euro-coins/train only")
    parser.add_argument("--piles-name", default="a head", help="how the table names the piles head")
    parser.add_argument("--phone-name", default="a head", help="how the table names the phone head")
    parser.add_argument("--tta", default="rotations")
    parser.add_argument("--out", default="artifacts/reports/bench-count", help="where the reports go")
    parser.add_argument("--write", help="update this BENCHMARKS.md")
    args = parser.parse_args()
    heads = {"piles": args.piles_head, "phone": args.phone_head}
    names = {"piles": args.piles_name, "phone": args.phone_name}
    figures = {name: score_set(name, heads[name], args.tta, Path(args.out)) for name in SETS}
    ahead = {name: look_ahead(name, heads[name], args.tta) for name in SETS}
    for name, found in figures.items():
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in found.items()}, ahead[name])
    if args.write:
        write_section(Path(args.write), render(args.tta, names, figures, ahead), "count")


if __name__ == "__main__":
    main()
