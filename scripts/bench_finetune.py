"""Benchmark ``coinfeat fine-tune`` on the shared euro-coins set with the pretrained Lite0 backbone.

In one run, each measurement in its own process (its own peak memory):

1. the whole command with defaults and a cold activation cache (cache + training + new store);
2. the same again with the cache warm (1 epoch, no new store): the lower part must not run;
3. warm-cache training with 2 views instead of 6: peak memory must not grow with the rows;
4. one epoch of a classic full fine-tune (whole network in the loop, live augmentation);
5. accuracy on the photo-disjoint ``test/`` folder: dense, logreg and knn heads on the frozen and
   on the tuned store, and the fine-tuned head itself, without and with TTA (4 rotations).

    python scripts/bench_finetune.py [--work DIR] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import AnonMemorySampler, run_child, write_section
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "euro-coins"
LITE0 = REPO.parent / "shared" / "weights" / "efficientnet_lite0_imagenet_notop.keras"
GROUPS = r"^(.*)_[^_]+$"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, work: str) -> dict:
    from coinfeat import ExtractConfig, extract_features
    from coinfeat.finetune import FinetuneConfig, finetune

    work_dir = Path(work)
    frozen = work_dir / "frozen"
    started = time.perf_counter()
    if mode == "extract":
        config = ExtractConfig(backbone=str(LITE0), group_regex=GROUPS, progress=False)
        extract_features(DATA, frozen, config)
        return {"seconds": time.perf_counter() - started}
    configs = {
        "cold": FinetuneConfig(progress=False, embed_out=str(work_dir / "tuned")),
        "warm": FinetuneConfig(progress=False, epochs=1, embed=False),
        "warm2": FinetuneConfig(progress=False, epochs=1, embed=False, views=2),
        "full": FinetuneConfig(progress=False, epochs=1, embed=False, full=True),
    }
    sampler = AnonMemorySampler()
    result = finetune(frozen, work_dir / f"ft-{mode}", configs[mode]).to_dict()
    anon = sampler.stop()
    return {
        **result,
        "wall": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "peak_anon_mb": anon,
    }


def scores(proba: np.ndarray, classes: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = classes[proba.argmax(1)]
    return {
        "top1": float(np.mean(pred == y)),
        "top3": float(top_k_accuracy_score(y, proba, k=3, labels=classes)),
        "balanced": float(balanced_accuracy_score(y, pred)),
    }


def accuracy(work: Path, tuned_head: str) -> list[dict]:
    """Heads on the frozen and the tuned store (test split), and the fine-tuned head, with TTA."""
    from coinfeat import open_store
    from coinfeat.core.extraction.embedder import Embedder
    from coinfeat.core.heads import ExtractorRecord, load_head, make_head

    rows = []
    for name, path in (("frozen", work / "frozen"), ("fine-tuned", work / "tuned")):
        store = open_store(path)
        X, train = store.select("train")
        X_val, val = store.select("val")
        X_test, test = store.select("test")
        y = test["label"].to_numpy(dtype=str)
        for head_type in ("dense", "logreg", "knn"):
            head = make_head(head_type).fit(X, train["label"], X_val, val["label"])
            rows.append(
                {
                    "features": name,
                    "head": head_type,
                    "tta": "none",
                    **scores(head.predict_proba(X_test), head.classes_, y),
                }
            )
        root = Path(store.manifest.dataset.root)
        tta = Embedder(ExtractorRecord.of_manifest(store.manifest)).embed(
            [str(root / p) for p in test["path"]], "rotations"
        )
        if name == "frozen":
            head = make_head("dense").fit(X, train["label"], X_val, val["label"])
            rows.append(
                {
                    "features": name,
                    "head": "dense",
                    "tta": "rotations",
                    **scores(head.predict_proba(tta.vectors), head.classes_, y),
                }
            )
        else:
            head = load_head(tuned_head)
            for mode, vectors in (("none", X_test), ("rotations", tta.vectors)):
                rows.append(
                    {
                        "features": name,
                        "head": "fine-tuned softmax",
                        "tta": mode,
                        **scores(head.predict_proba(vectors), head.classes_, y),
                    }
                )
    return rows


def render(runs: dict, rows: list[dict]) -> str:
    cold, warm, warm2, full = runs["cold"], runs["warm"], runs["warm2"], runs["full"]
    from coinfeat.core.images.crop import DEFAULT_CROP
    from coinfeat.finetune import FinetuneConfig

    d = FinetuneConfig()
    s = cold["seconds"]
    cached_epoch = s["per_epoch"]
    full_epoch = full["seconds"]["per_epoch"]
    train_rows = cold["train_photos"] * (1 + cold["views"])
    lines = [
        "<!-- bench_finetune:start -->",
        "## Fine-tuning on cached activations (`scripts/bench_finetune.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, 2 cores, one run. Base: **EfficientNet-Lite0** with real "
        "ImageNet weights (`../shared/weights`; Lite0's figures, not B0's), 224 px, pad. euro-coins: "
        f"train {cold['train_photos']} photos, val {cold['val_photos']} (whole photo groups carved from "
        "`train/`), test 1539 (the photo-disjoint `test/` folder, never used for training or stopping). "
        f"`coinfeat fine-tune` defaults: crop `{DEFAULT_CROP}`, cut `{cold['cut']}`, {cold['views']} views, "
        f"up to {d.epochs} epochs, patience {d.patience}, learning rate {d.learning_rate:g}, "
        f"batch {d.batch_size}.",
        "",
        "| features | head | TTA | top-1 | top-3 | balanced acc. |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['features']} | {r['head']} | {r['tta']} | {r['top1']:.3f} | {r['top3']:.3f} | "
            f"{r['balanced']:.3f} |"
        )
    lines += [
        "",
        "| run | cache s | training s | epochs (best) | s per epoch | new store s | total s | peak RSS MB "
        "| peak anon. MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (
        ("cold cache, defaults (the whole command)", cold),
        ("warm cache, 1 epoch", warm),
        ("warm cache, 2 views, 1 epoch", warm2),
        ("classic full fine-tune, 1 epoch", full),
    ):
        t = r["seconds"]
        lines.append(
            f"| {name} | {t.get('cache', 0):.1f} | {t['training']:.1f} | "
            f"{r['epochs_run']} ({r['best_epoch']}) | "
            f"{t['per_epoch']:.1f} | {t.get('embed', 0):.1f} | {t['total']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['peak_anon_mb']:.0f} |"
        )
    lines += [
        "",
        f"- The whole command took **{s['total'] / 60:.1f} min** (target <= 15): cache {s['cache']:.0f} s "
        f"({cold['cache_rows']} rows: train and val photos and {cold['views']} views of each train photo), "
        f"training {s['training']:.0f} s, new store {s.get('embed', 0):.0f} s.",
        f"- Warm cache: {warm['cache_reused']} of {warm['cache_rows']} rows reused, cache step "
        f"{warm['seconds']['cache']:.1f} s (the lower part never ran).",
        f"- One cached epoch ({train_rows} rows of the top blocks) took {cached_epoch:.0f} s; "
        "one classic epoch "
        f"(all {cold['train_photos']} train photos decoded, augmented and passed through the whole network, "
        f"forward and backward) took {full_epoch:.0f} s: **{full_epoch / cached_epoch:.1f}x** the cached "
        f"epoch for 1/{1 + cold['views']} of its samples, i.e. "
        f"{(full_epoch / cold['train_photos']) / (cached_epoch / train_rows):.0f}x per sample.",
        f"- Peak anonymous memory (what the process itself holds): {warm['peak_anon_mb']:.0f} MB training on "
        f"{warm['cache_rows']} cached rows, {warm2['peak_anon_mb']:.0f} MB on "
        f"{cold['train_photos'] * 3 + cold['val_photos']} rows: batches stream from the memory-mapped "
        "float16 cache, so memory does not grow with the number of photos. Peak RSS also counts the "
        "cache pages the kernel mapped in (page cache it can drop), hence its difference.",
        "<!-- bench_finetune:end -->",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--write", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if not (DATA.is_dir() and LITE0.is_file()):
        raise SystemExit("needs ../shared/data/euro-coins and ../shared/weights (Lite0)")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-finetune-"))
    if not (work / "frozen" / "manifest.json").exists():
        run_child(__file__, "extract", str(work))
    shutil.rmtree(work / "frozen" / "activations", ignore_errors=True)
    shutil.rmtree(work / "tuned", ignore_errors=True)
    runs = {}
    for mode in ("cold", "warm", "warm2", "full"):
        runs[mode] = run_child(__file__, mode, str(work))
        print(mode, json.dumps(runs[mode]["seconds"]), file=sys.stderr)
    rows = accuracy(work, runs["cold"]["head_dir"])
    section = render(runs, rows)
    print(section)
    write_section(Path(args.write), section, "bench_finetune")


if __name__ == "__main__":
    main()
