"""Does it work on someone else's photos? One run of the issue's table (pretrained Lite0 backbone).

Everything is fitted on the shared ``euro-coins`` train folder only (val for early stopping and
the answer-set calibration); ``euro-coins-phone`` (another phone, table and light) is only ever a
test set, its marked coins cut out by ``extract-features --annotations``. Rows:

1. ``--crop none``, frozen: the photos as they are (before the coin crop);
2. ``--crop coin-masked``, frozen: the coin crop with the outside painted grey;
3. ``--crop coin``, frozen;
4. ``--crop coin``, frozen, + 4 camera-like augmented views per train photo (``--use-augmented``);
5. ``--crop coin-balanced`` (the default: grey world, then the coin crop), frozen;
6. the default crop (or ``--tune-crop``), fine-tuned with the defaults (``coinfeat fine-tune``), dense
   head on the tuned store;
   one row per ``--seeds`` (another seed is another draw of the same recipe: the spread between
   draws is the honest error bar of row 6).

Columns: val and test top-1 and balanced accuracy (same camera, photo-disjoint), euro-coins-phone
top-1/top-3, "right design family" accuracy (``compare --class-groups euro``), 90% answer-set
coverage and mean size on test and on the phone coins; seconds.

    python scripts/bench_camera.py [--work DIR] [--write BENCHMARKS.md] [--skip-finetune] [--seeds 0 1 2]
                                   [--tune-crop coin]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchlib import write_section

from coinfeat.core.images.crop import CROPS, DEFAULT_CROP

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data" / "euro-coins"
PHONE = SHARED / "data" / "euro-coins-phone"
LITE0 = SHARED / "weights" / "efficientnet_lite0_imagenet_notop.keras"
GROUPS = r"^(.*)_[^_]+$"


def stores(work: Path, crop: str, augment: int = 0) -> tuple[Path, Path]:
    """The euro-coins store and the phone-coins store made with one extractor."""
    from coinfeat import ExtractConfig, extract_features

    config = ExtractConfig(
        backbone=str(LITE0), crop=crop, group_regex=GROUPS, augment=augment, progress=False
    )
    name = f"ec-{crop}" + (f"-aug{augment}" if augment else "")
    train = extract_features(DATA, work / name, config).store
    return Path(train), phone_store(work, crop, str(LITE0), "frozen")


def phone_store(work: Path, crop: str, backbone: str, tag: str) -> Path:
    """The coins marked on the euro-coins-phone photos, cut out and embedded as one test store."""
    from coinfeat import ExtractConfig, extract_features

    config = ExtractConfig(
        backbone=backbone,
        crop=crop,
        annotations="yolo",
        cut_dir=str(work / "phone-cut"),
        split=(0.0, 0.0, 1.0),
        progress=False,
    )
    return Path(extract_features(PHONE, work / f"phone-{crop}-{tag}", config).store)


def scores(train: Path, phone: Path, use_augmented: bool = False) -> dict:
    """Dense head figures in-domain and on the phone coins."""
    from coinfeat.compare import CompareConfig, compare_heads

    config = dict(heads=["dense"], top_k=[1, 3], use_augmented=use_augmented, class_groups="euro")
    own = compare_heads(train, CompareConfig(**config)).results[0]
    other = compare_heads(train, CompareConfig(test_features=str(phone), **config)).results[0]
    inside, outside = own.metrics, other.metrics
    sets, phone_sets = inside["test"].get("answer_sets", {}), outside["test"].get("answer_sets", {})
    return {
        "val": inside["val"]["top1"],
        "test": inside["test"]["top1"],
        "test_balanced": inside["test"]["balanced_accuracy"],
        "phone": outside["test"]["top1"],
        "phone_top3": outside["test"]["top3"],
        "test_family": own.parts.get("class group"),
        "phone_family": other.parts.get("class group"),
        "set_coverage": sets.get("coverage"),
        "set_size": sets.get("mean_size"),
        "phone_set_coverage": phone_sets.get("coverage"),
        "phone_set_size": phone_sets.get("mean_size"),
    }


def measure(
    work: Path, seeds: list[int], ema: float | None = None, tune_crop: str = DEFAULT_CROP
) -> list[dict]:
    rows = []
    for name, crop, augment in (
        ("frozen, --crop none", "none", 0),
        ("frozen, --crop coin-masked", "coin-masked", 0),
        ("frozen, --crop coin", "coin", 0),
        ("frozen, --crop coin, + 4 camera views", "coin", 4),
        (f"frozen, --crop {DEFAULT_CROP} (default)", DEFAULT_CROP, 0),
    ):
        started = time.perf_counter()
        train, phone = stores(work, crop, augment=augment)
        rows.append({"row": name, **scores(train, phone, use_augmented=augment > 0)})
        rows[-1]["seconds"] = time.perf_counter() - started
    for seed in seeds:
        rows.append(fine_tuned(work, seed, named_by_seed=len(seeds) > 1, ema=ema, crop=tune_crop))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fine_tuned(
    work: Path, seed: int, named_by_seed: bool, ema: float | None = None, crop: str = DEFAULT_CROP
) -> dict:
    """Row 6: the ``crop`` store fine-tuned with the defaults (and ``seed``, and ``ema`` when
    given), scored like the others."""
    from coinfeat.finetune import FinetuneConfig, finetune

    started = time.perf_counter()
    base, _ = stores(work, crop)
    default_ema = FinetuneConfig().ema
    ema = default_ema if ema is None else ema
    other_ema = ema != default_ema
    tag = (f"-{crop}" if crop != DEFAULT_CROP else "") + (f"-seed{seed}" if named_by_seed else "")
    tag += f"-ema{ema:g}" if other_ema else ""
    tuned_store, out = work / f"tuned{tag}", work / f"ft{tag}"
    for made_by_the_last_run in (tuned_store, work / f"phone-{crop}-tuned{tag}"):
        shutil.rmtree(made_by_the_last_run, ignore_errors=True)  # another backbone file each run
    config = FinetuneConfig(progress=False, embed_out=str(tuned_store), seed=seed, ema=ema)
    result = finetune(base, out, config)
    seconds = time.perf_counter() - started
    phone = phone_store(work, crop, str(out / "backbone.keras"), f"tuned{tag}")
    row = f"fine-tuned (defaults), --crop {crop}" + (f", --seed {seed}" if named_by_seed else "")
    row += f", --ema {ema:g}" if other_ema else ""
    kept = ("cut", "views", "epochs_run", "best_epoch", "stopped_by", "val_loss", "seconds")
    finetuned = {k: result.to_dict().get(k) for k in kept} | {"seed": seed}
    return {"row": row, **scores(tuned_store, phone), "seconds": seconds, "finetune": finetuned}


def table(rows: list[dict]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        "| Lite0, heads fitted on euro-coins train | val top-1 | test top-1 | test balanced | "
        "phone top-1 | phone top-3 | design family: test / phone | 90% sets: test coverage / size | "
        "phone coverage / size | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {fmt(r['val'])} | {fmt(r['test'])} | {fmt(r['test_balanced'])} | "
            f"{fmt(r['phone'])} | {fmt(r['phone_top3'])} | "
            f"{fmt(r['test_family'])} / {fmt(r['phone_family'])} | "
            f"{fmt(r['set_coverage'])} / {fmt(r['set_size'])} | "
            f"{fmt(r['phone_set_coverage'])} / {fmt(r['phone_set_size'])} | {r['seconds']:.0f} |"
        )
    tuned = [r for r in rows if "finetune" in r]
    for f in (r["finetune"] for r in tuned):
        lines.append(
            f"\nThe fine-tune (seed {f.get('seed', 0)}): cut {f['cut']}, {f['views']} views, "
            f"{f['epochs_run']} epochs (best {f['best_epoch']}, ended by {f.get('stopped_by') or '?'}), "
            f"val loss {f['val_loss']:.3f}, {f['seconds'].get('total', 0):.0f} s for the command "
            "(cache, training, new store)."
        )
    lines += spread_across_seeds(tuned)
    return "\n".join(lines)


def spread_across_seeds(tuned: list[dict]) -> list[str]:
    """Lowest, mean and highest of the fine-tuned rows' main figures, when there are several."""
    if len(tuned) < 2:
        return []
    keys = (("phone", "phone top-1"), ("test", "test top-1"), ("test_family", "test family"),
            ("phone_family", "phone family"), ("set_size", "test set size"))  # fmt: skip
    parts = []
    for key, name in keys:
        values = [r[key] for r in tuned if r.get(key) is not None]
        if values:
            parts.append(f"{name} {min(values):.3f} / {sum(values) / len(values):.3f} / {max(values):.3f}")
    return [f"\nAcross {len(tuned)} seeds (lowest / mean / highest): " + "; ".join(parts) + "."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--write", type=Path, help="update this BENCHMARKS.md section")
    parser.add_argument("--skip-finetune", action="store_true", help="the frozen rows only")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one fine-tuned row per seed (default: 0)"
    )
    parser.add_argument("--ema", type=float, help="--ema of the fine-tuned rows (default: fine-tune's)")
    parser.add_argument(
        "--tune-crop",
        default=DEFAULT_CROP,
        choices=CROPS,
        help=f"crop of the fine-tuned rows (default: {DEFAULT_CROP})",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-camera-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = measure(work, [] if args.skip_finetune else args.seeds, args.ema, args.tune_crop)
    print(json.dumps(rows))
    text = table(rows)
    print(text)
    if args.write:
        section = (
            "<!-- camera:start -->\n## Someone else's photos (`scripts/bench_camera.py`)\n\n"
            f"Measured {time.strftime('%Y-%m-%d')}, 2 cores, pretrained EfficientNet-Lite0, dense head, "
            "no TTA, everything fitted on the euro-coins train folder; euro-coins-phone only tested.\n\n"
            f"{text}\n<!-- camera:end -->"
        )
        write_section(args.write, section, "camera")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
