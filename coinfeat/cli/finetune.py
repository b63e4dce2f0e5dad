"""``coinfeat fine-tune``: the backbone's top blocks trained on cached activations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coinfeat.cli.output import (
    common_options,
    wants_progress,
)


def add_parser(commands) -> None:
    from coinfeat.core.extraction.engines import ENGINES
    from coinfeat.finetune import DEFAULT_CUTS, FinetuneConfig
    from coinfeat.finetune.budget import DEFAULT_VIEWS, LARGE_ROWS
    from coinfeat.finetune.network import OBJECTIVES

    d = FinetuneConfig()
    cuts = ", ".join(f"{k} at {v}" for k, v in DEFAULT_CUTS.items())
    p = commands.add_parser(
        "fine-tune",
        help="fine-tune the backbone's top blocks on cached activations (minutes on a CPU)",
        description="Fine-tune the store's own backbone on its train split (val stops training early). "
        "The frozen lower part runs ONCE over the train and val photos and --views augmented views "
        "of each train photo; its activations are cached in STORE/activations/<cut>/ (float16; a "
        "re-run reuses them). Only the part above --cut and a softmax layer are trained, from the "
        "cache. Writes backbone.keras (use it as --backbone anywhere), head/ (use it with predict, "
        "serve, compare --load), finetune.json, history.json and curves.png into --out, then embeds "
        "the dataset again with the tuned backbone into a new store. Test photos are never used.",
        epilog=f"Cost: caching runs the lower part about (1 + views) x train photos times; each epoch "
        "then trains only the part above the cut (measured on 2 cores, 1,110 train photos, Lite0 at "
        "block4c_add: cache 72 s, 118-165 s per epoch, 10-13 min in all with 5 epochs). Above "
        f"{LARGE_ROWS:,} cache rows the command measures this machine and fits --max-minutes: fewer views, "
        "epochs on class-balanced samples of the cached rows, then a higher cut; it says what it chose "
        "and why (finetune.json 'plan'). Default cuts: "
        f"{cuts}; .keras files with B0's layer names are cut like efficientnetb0, or like "
        "efficientnet-lite when they have no squeeze-excite layers (EfficientNet-Lite0) and the store "
        "has a coin crop. A lower cut trains more of the network: slower, more capacity, larger cache. "
        "--full trains the whole network from decoded photos with live augmentation instead: no cache, "
        "slow on a CPU, meant for a GPU (Keras uses one when present).",
    )
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument(
        "--cut",
        help="layer where the trained part starts (default: per backbone, see below; moved up a stage "
        "when the time budget cannot train it on a large collection)",
    )
    p.add_argument(
        "--views",
        type=int,
        default=d.views,
        help=f"augmented views per train photo (default {DEFAULT_VIEWS}, fewer when the time budget cannot "
        "cache them all on a large collection)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"most epochs (default {d.epochs})")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=d.learning_rate,
        help=f"Adam's learning rate (default {d.learning_rate})",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help=f"epochs without a better val loss before stopping (default {d.patience})",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=d.max_minutes,
        help=f"time budget of the whole command: no epoch starts that would end past it, keeping time "
        f"for the final embedding (default {d.max_minutes:g}; 0: none)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"seeds the trained layers and the batch order (default {d.seed}): another seed is another "
        "draw of the same recipe, to see how much a result owes to chance",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=d.ema,
        help=f"momentum of a moving average of the trained weights, taken as the model at each epoch's "
        f"end (default {d.ema:g}, lowered on small collections; 0: off)",
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=d.objective,
        help=f"what is trained (default {d.objective}): softmax, a dense softmax layer (the head is a "
        "dense head); cosine, class vectors compared by cosine with a margin (metric learning: the "
        "head is a centroid head, and a new coin type is only new vectors for enrol)",
    )
    p.add_argument("--out", help="output folder (default artifacts/finetuned/<dataset>)")
    p.add_argument("--full", action="store_true", help="train the whole network end to end (for a GPU)")
    p.add_argument("--no-embed", action="store_true", help="do not embed the dataset with the tuned backbone")
    p.add_argument("--embed-out", help="the new store (default: artifacts/features/<dataset>-finetuned)")
    p.add_argument(
        "--engine", choices=ENGINES, default="auto", help="engine for the frozen part (default auto)"
    )
    p.add_argument("--threads", type=int, help="decode and inference threads (default: all cores)")
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        cut=args.cut,
        views=args.views,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed,
        ema=args.ema,
        objective=args.objective,
        max_minutes=args.max_minutes or None,
        full=args.full,
        embed=not args.no_embed,
        embed_out=args.embed_out,
        engine=args.engine,
        threads=args.threads,
        progress=wants_progress(args),
    )
    result = finetune(args.features, args.out, config)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    cache = (
        f", cache {result.cache_rows} rows ({result.cache_reused} reused)" if result.mode == "cached" else ""
    )
    averaged = f", weights averaged (EMA {result.ema:g})" if result.ema else ""
    objective = "" if result.objective == "softmax" else f" ({result.objective} objective)"
    print(
        f"fine-tuned {f'above {result.cut}' if result.cut else 'end to end'}{objective}: "
        f"{result.epochs_run} epoch(s), "
        f"best {result.best_epoch} ({result.stopped_by}){averaged}, val loss {result.val_loss:.3f}, "
        f"val accuracy {result.val_accuracy:.3f}, "
        f"balanced {result.val_balanced_accuracy:.3f}{cache}"
    )
    print("  seconds: " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items()))
    print(f"  backbone: {result.backbone}  (use as --backbone)")
    kind = "centroid head of the class vectors" if result.objective == "cosine" else "dense head"
    print(f"  head:     {result.head_dir}  ({kind}: use with predict, serve, compare --load, enrol)")
    if result.answer_sets:
        print(f"  answer sets calibrated on {result.answer_sets} val photos (predict/count --confidence)")
    if result.store:
        print(f"  store:    {result.store}  (embedded with the tuned backbone)")
    print(f"  curves:   {Path(result.out) / 'curves.png'}")
    for note in result.notes:
        print(f"  note: {note}")
    if not result.pretrained:
        print("  WARNING: NOT PRETRAINED base weights: the tuned network is for testing only")
    return 0
