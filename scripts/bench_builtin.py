"""The built-in euro model as a user gets it: the wheel's size, file by file, and seconds per
12 Mpx photo counted with no --head (TTA rotations, the default), in one run.

    python scripts/bench_builtin.py [--photos 12] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from benchlib import write_section

REPO = Path(__file__).resolve().parents[1]
PILES = REPO.parent / "shared" / "data" / "euro-coins-photos" / "train"


def wheel_sizes() -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                folder,
                str(REPO),
            ],
            check=True,
        )
        [wheel] = Path(folder).glob("coinfeat-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            big = {i.filename: i.compress_size / 1e6 for i in archive.infolist() if i.compress_size > 500_000}
        return wheel.stat().st_size / 1e6, big


def seconds_per_photo(n: int) -> list[float]:
    from coinfeat.counting.count import CoinCounter

    counter = CoinCounter(None, progress=False)
    photos = sorted(PILES.glob("*.jpg"))[: n + 1]
    counter.count(photos[0])  # the engine's first call
    seconds = []
    for photo in photos[1:]:
        started = time.perf_counter()
        counter.count(photo)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    total, big = wheel_sizes()
    seconds = seconds_per_photo(args.photos)
    lines = [
        "<!-- bench_builtin:start -->",
        "## The built-in model as shipped (`scripts/bench_builtin.py`)",
        "",
        f"Wheel: {total:.1f} MB (the aim: 40 MB at most). Its largest files, compressed:",
        "",
        "| file | MB |",
        "|---|---|",
        *[f"| `{name}` | {size:.1f} |" for name, size in sorted(big.items(), key=lambda kv: -kv[1])],
        "",
        f"`count` with the built-in euro model (no `--head`, rotations TTA) on {len(seconds)} of the "
        "12 Mpx `euro-coins-photos` piles (about 30 coins each), 2 cores, after the first call: median "
        f"{np.median(seconds):.2f} s a photo, {min(seconds):.2f}-{max(seconds):.2f} s (the aim: 2 s at "
        "most). Accuracy is not measured on these piles: the model was trained on crops cut from them.",
        "<!-- bench_builtin:end -->",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, text, "bench_builtin")


if __name__ == "__main__":
    main()
