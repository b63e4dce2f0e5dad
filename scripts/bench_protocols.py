"""Unknown coins and enrolment on the euro coins, side by side in one run (`compare --open-set`,
`compare --enrol`), over several draws of the held-out classes.

The shared euro-coins store with the pretrained EfficientNet-Lite0 (made here if absent, frozen,
default crop); for each seed two classes are held out: as unknown coins (AUROC of each score,
share of unknowns rejected at 95% of known coins accepted), and as new types enrolled from 5 photos
each without refitting, against a full refit on the same photos.

    python scripts/bench_protocols.py [--store DIR] [--seeds 0 1 2 3 4] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchlib import write_section

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "euro-coins"
LITE0 = REPO.parent / "shared" / "weights" / "efficientnet_lite0_imagenet_notop.keras"
HEADS = ["logreg", "dense", "knn", "centroid"]


def store_at(path: Path):
    from coinfeat import extract_features, open_store

    if not (path / "manifest.json").exists():
        extract_features(DATA, path, backbone=str(LITE0), group_regex=r"^(.*)_[^_]+$", progress=False)
    return open_store(path)


def measure(store, seeds: list[int]) -> tuple[list[dict], list[dict]]:
    from coinfeat.compare.enrolment import enrolment
    from coinfeat.compare.open_set import open_set

    unknown, enrolled = [], []
    for seed in seeds:
        found = open_set(store, HEADS, k=2, seed=seed)
        for head, scores in found["heads"].items():
            for score, figures in scores.items():
                unknown.append(
                    {
                        "seed": seed,
                        "held_out": found["unknown_classes"],
                        "head": head,
                        "score": score,
                        **figures,
                    }
                )
        grown = enrolment(store, HEADS, k=2, shots=5, seed=seed)
        enrolled += [
            {"seed": seed, "new": grown["new_classes"], "head": h, **f} for h, f in grown["heads"].items()
        ]
    return unknown, enrolled


def section(unknown: list[dict], enrolled: list[dict], seeds: list[int]) -> str:
    lines = [
        "<!-- bench_protocols:start -->",
        "## Unknown coins and enrolment (`scripts/bench_protocols.py`)",
        "",
        f"Euro coins, pretrained Lite0, frozen, default crop; two classes held out per draw (seeds "
        f"{', '.join(map(str, seeds))}), the photo-disjoint test folder scored. Mean over the draws "
        "(min-max). Unknown coins: AUROC of known against held-out test photos, and the share of "
        "held-out photos rejected when 95% of known ones are accepted. Enrolment: the held-out classes "
        "added from 5 train photos each without refitting, top-1 over all classes on their test photos "
        "(new) and on the others (old), beside a full refit on the same photos; seconds on 2 cores.",
        "",
        "| head | score | AUROC | rejected at 95% known |",
        "|---|---|---|---|",
    ]
    for head in HEADS:
        for score in ("max_probability", "similarity"):
            rows = [r for r in unknown if r["head"] == head and r["score"] == score]
            lines.append(
                f"| {head} | {score} | {_spread([r['auroc'] for r in rows])} | "
                f"{_spread([r['rejected_at_95'] for r in rows])} |"
            )
    lines += [
        "",
        "| head | new top-1 enrolled | new top-1 refitted | old top-1 enrolled | old top-1 refitted | "
        "old top-1 before | enrol s | refit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for head in HEADS:
        rows = [r for r in enrolled if r["head"] == head]
        cells = [
            _spread([r[k] for r in rows])
            for k in ("new_top1", "refit_new_top1", "old_top1", "refit_old_top1", "old_top1_before")
        ]
        seconds = [f"{np.mean([r[k] for r in rows]):.2f}" for k in ("enrol_seconds", "refit_seconds")]
        lines.append(f"| {head} | {' | '.join(cells)} | {' | '.join(seconds)} |")
    draws = "; ".join(
        f"seed {s}: {', '.join(next(r['held_out'] for r in unknown if r['seed'] == s))}" for s in seeds
    )
    lines += ["", f"Held out: {draws}.", "<!-- bench_protocols:end -->"]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO / "artifacts" / "features" / "euro-coins-lite0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--write", type=Path, help="update this BENCHMARKS.md")
    args = parser.parse_args()
    unknown, enrolled = measure(store_at(args.store), args.seeds)
    text = section(unknown, enrolled, args.seeds)
    print(text)
    if args.write:
        write_section(args.write, text, "bench_protocols")


if __name__ == "__main__":
    main()
