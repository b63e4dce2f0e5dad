"""Benchmark: latency of one prediction through ``coinfeat serve`` with the model already loaded.

Posts real euro-coins photos to ``/api/predict`` (decode, embed, head, neighbours) through the
FastAPI app in-process, with test-time rotations (the default) and without, side by side.

    python scripts/bench_serve.py --store DIR --head DIR [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench_heads import DATA
from benchlib import write_section
from fastapi.testclient import TestClient

from coinfeat.serve import Recogniser, create_app

REQUESTS = 40


def measure(store: Path, head: Path, tta: str) -> dict[str, float]:
    client = TestClient(create_app(Recogniser(store, head, tta=tta)))
    photos = sorted((DATA / "test").rglob("*.jpg"))[:: max(1, 1539 // REQUESTS)][:REQUESTS]
    client.post("/api/predict", files={"image": ("w.jpg", photos[0].read_bytes())})
    wall, server = [], []
    for photo in photos:
        started = time.perf_counter()
        body = client.post("/api/predict", files={"image": ("q.jpg", photo.read_bytes())}).json()
        wall.append((time.perf_counter() - started) * 1000)
        server.append(body["timing_ms"]["total"])
    return {
        "wall": statistics.median(wall),
        "server": statistics.median(server),
        "p95": sorted(wall)[int(0.95 * len(wall))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True, help="euro-coins store (Lite0 features)")
    parser.add_argument("--head", type=Path, required=True, help="a head fitted on it")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rotations, single = measure(args.store, args.head, "rotations"), measure(args.store, args.head, "none")
    lines = [
        "<!-- bench_serve:start -->",
        "## `coinfeat serve` latency (`scripts/bench_serve.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, 2 cores, model loaded, {REQUESTS} real euro-coins photos "
        "posted to `/api/predict` (decode, embed with Lite0 via TFLite, head, 8 neighbours among the "
        "train photos), request round trip through the ASGI app.",
        "",
        "| query embedding | median ms | p95 ms | median ms inside the server |",
        "|---|---:|---:|---:|",
        f"| 4 rotations averaged (default) | {rotations['wall']:.1f} | {rotations['p95']:.1f} | "
        f"{rotations['server']:.1f} |",
        f"| single pass (`tta=none`) | {single['wall']:.1f} | {single['p95']:.1f} | {single['server']:.1f} |",
        "",
        f"- Default is {rotations['wall'] / single['wall']:.1f}x the single pass and "
        f"{1000 / rotations['wall']:.0f}x under the one-second target.",
        "<!-- bench_serve:end -->",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, section, "bench_serve")


if __name__ == "__main__":
    main()
