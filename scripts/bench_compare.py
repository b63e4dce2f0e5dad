"""Benchmark: wall time of ``coinfeat compare`` on the euro-coins store (target: well under a minute).

Runs the real CLI command (fit all default heads, evaluate, write every report file) on a store
embedded with the pretrained Lite0 backbone, with and without the augmented views, and records
the seconds against the 60 s budget in BENCHMARKS.md.

    python scripts/bench_compare.py [--store DIR] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_heads import build_store
from benchlib import write_section

BUDGET = 60.0


def timed_compare(store: Path, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coinfeat",
            "compare",
            "--features",
            str(store),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="an existing Lite0 euro-coins store made with --augment 4")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coinfeat-compare-"))
    try:
        store = args.store or build_store(work)
        rows = [
            ("default heads, clean train photos", timed_compare(store, work / "a")),
            ("default heads, + augmented views", timed_compare(store, work / "b", "--use-augmented")),
            ("default heads, + 5-fold CV", timed_compare(store, work / "c", "--cv", "5")),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "<!-- bench_compare:start -->",
        "## `coinfeat compare` wall time (`scripts/bench_compare.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, 2 cores, euro-coins store (Lite0 features), whole CLI "
        "command including Python start-up, fitting dense/logreg/knn/centroid, evaluation and every "
        "report file.",
        "",
        "| run | seconds | share of the 60 s budget |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {seconds:.1f} | {seconds / BUDGET:.2f} |" for name, seconds in rows]
    lines.append("<!-- bench_compare:end -->")
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, section, "bench_compare")


if __name__ == "__main__":
    main()
