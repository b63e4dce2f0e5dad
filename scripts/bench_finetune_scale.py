"""Benchmark ``coinfeat fine-tune`` time and cache size against collection size, side by side in one run.

Timing collections are made from the shared euro-coins photos: each of N photos is a euro-coin
photo turned by a few degrees and lightly re-exposed (so every file is new to the store) and filed
under one of 211 labels (the size of a world-coin collection): speed does not depend on what the
labels mean, so accuracy is NOT measured here (see bench_camera.py for that). For each size the
pretrained Lite0 store is made (not timed), then ``fine-tune`` runs with its defaults (15-minute
budget, the final embedding included) in its own process, and its plan, times, epochs, cache size on
disk and peak memory are recorded.

    python scripts/bench_finetune_scale.py [--sizes 1000 3000 6000 10000] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import AnonMemorySampler, run_child, write_section
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "euro-coins"
LITE0 = REPO.parent / "shared" / "weights" / "efficientnet_lite0_imagenet_notop.keras"
CLASSES = 211


def make_collection(size: int, out: Path) -> Path:
    """``size`` distinct photos in ``CLASSES`` class folders, made from the euro-coins photos."""
    sources = sorted(DATA.glob("*/*/*.jpg"))
    rng = np.random.default_rng(size)
    for i in range(size):
        source = sources[i % len(sources)]
        label = f"type{rng.integers(CLASSES):03d}"
        (out / label).mkdir(parents=True, exist_ok=True)
        with Image.open(source) as img:
            turned = img.convert("RGB").rotate(float(rng.uniform(-20, 20)), fillcolor=(235, 235, 235))
            ImageEnhance.Brightness(turned).enhance(float(rng.uniform(0.9, 1.1))).save(
                out / label / f"p{i:05d}.jpg", quality=92
            )
    return out


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def child(size: str, work: str) -> dict:
    from coinfeat import extract_features, open_store
    from coinfeat.finetune import finetune

    root = Path(work) / f"n{size}"
    data = make_collection(int(size), root / "photos")
    store = extract_features(data, root / "store", backbone=str(LITE0), progress=False).store
    photos = open_store(store).items.pipe(lambda t: t[t["view"].eq(0)])
    sampler = AnonMemorySampler()
    started = time.perf_counter()
    result = finetune(store, root / "tuned", embed_out=str(root / "tuned-store"), progress=False)
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    record = json.loads((root / "tuned" / "finetune.json").read_text())
    plan = record.get("plan") or {}
    cache_dir = Path(store) / "activations" / result.cut
    return {
        "photos": int(size),
        "train": int(photos["split"].eq("train").sum()),
        "minutes": round(seconds / 60, 2),
        "cache_s": result.seconds.get("cache"),
        "training_s": result.seconds.get("training"),
        "embed_s": result.seconds.get("embed"),
        "cut": result.cut,
        "views": result.views,
        "rows_per_epoch": plan.get("rows_per_epoch") or plan.get("train_rows") or result.cache_rows,
        "train_rows": plan.get("train_rows"),
        "epochs": result.epochs_run,
        "stopped_by": result.stopped_by,
        "per_epoch_s": result.seconds.get("per_epoch"),
        "ms_per_train_row": round(1000 * plan["seconds_per_train_row"], 1)
        if plan.get("seconds_per_train_row")
        else None,
        "cache_mb": round(folder_mb(cache_dir), 1),
        "peak_anon_mb": round(peak),
        "reasons": plan.get("reasons", []),
    }


def section(rows: list[dict]) -> str:
    lines = [
        "<!-- bench_finetune_scale:start -->",
        "## Fine-tune time and cache against collection size (`scripts/bench_finetune_scale.py`)",
        "",
        f"Timing collections of N photos made from the euro-coins photos (each turned and re-exposed, "
        f"filed under {CLASSES} labels; accuracy is not measured here), pretrained Lite0 store with the "
        "default crop, `coinfeat fine-tune` with its defaults (15-minute budget including the final "
        "embedding of every photo), 2 cores, one run, each size in its own process. `rows/epoch` is "
        "what each epoch trained on (a class-balanced sample when fewer than the cached train rows).",
        "",
        "| photos | train | whole command min | cache s | training s | embed s | cut | views | "
        "rows/epoch (of cached) | epochs | stopped by | ms per train row | cache on disk MB | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['photos']} | {r['train']} | {r['minutes']} | {r['cache_s']} | {r['training_s']} | "
            f"{r['embed_s']} | {r['cut']} | {r['views']} | "
            f"{r['rows_per_epoch']} ({r['train_rows'] or 'all'}) | {r['epochs']} | {r['stopped_by']} | "
            f"{r['ms_per_train_row'] or 'n/a'} | {r['cache_mb']} | {r['peak_anon_mb']} |"
        )
    lines.append("")
    lines += [f"- {r['photos']} photos: {'; '.join(r['reasons'])}" for r in rows if r["reasons"]]
    lines.append("<!-- bench_finetune_scale:end -->")
    return "\n".join(lines)


def main() -> None:
    if "--child" in sys.argv:
        size, work = sys.argv[2], sys.argv[3]
        print(json.dumps(child(size, work)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 6000, 10000])
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    parser.add_argument("--write", type=Path, help="update this BENCHMARKS.md")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ftscale-"))
    rows = []
    for size in args.sizes:
        rows.append(run_child(__file__, str(size), str(work)))
        print(json.dumps(rows[-1]), flush=True)
    text = section(rows)
    print(text)
    if args.write:
        write_section(args.write, text, "bench_finetune_scale")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
