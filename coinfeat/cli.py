"""The ``coinfeat`` command line. It only parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from coinfeat import __version__
from coinfeat.errors import CoinfeatError

EPILOG = "Run `coinfeat COMMAND --help` for a command's options. Docs: README.md."
PRINTED = 20
"""predict prints at most this many photos when --out holds them all."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coinfeat",
        description="Recognise coins from photos: embed every photo once with a frozen "
        "EfficientNetB0, then train and compare cheap heads on the cached vectors.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"coinfeat {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and per-batch timings")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_extract(commands)
    _add_fit_head(commands)
    _add_predict(commands)
    _add_compare(commands)
    _add_count(commands)
    _add_similar(commands)
    _add_finetune(commands)
    _add_export(commands)
    _add_serve(commands)
    _add_demo(commands)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and per-batch timings",
    )


def _add_extract(commands) -> None:
    from coinfeat.backbones import PRECISIONS
    from coinfeat.engines import ENGINES
    from coinfeat.extract import RUNNERS
    from coinfeat.images import DEFAULT_IMAGE_SIZE, RESIZE_POLICIES
    from coinfeat.quantize import DEFAULT_CALIBRATION

    p = commands.add_parser(
        "extract-features",
        help="embed every photo of a collection once into a feature store",
        description="Embed every image of DATA with a frozen backbone and cache the vectors in a "
        "store (embeddings.npy + items.parquet + manifest.json). Re-runs embed only new "
        "or changed files; an interrupted run resumes where it stopped.",
        epilog="DATA layouts: DATA/<class>/*.jpg; DATA/{train,val,test}/<class>/*.jpg; or a CSV "
        "with columns path,label[,split] (paths relative to the CSV). A cat_to_name.json "
        "in DATA supplies display names.",
    )
    p.add_argument("--data", required=True, help="dataset folder or CSV manifest")
    p.add_argument("--out", help="store directory (default: artifacts/features/<dataset name>)")
    p.add_argument(
        "--backbone",
        default="efficientnetb0",
        help="efficientnetb0 (default), mobilenetv2, resnet50, or a .keras model file that "
        "maps 0-255 RGB images to a feature map or vector",
    )
    p.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (default; Keras downloads and caches it), none (random, seeded: "
        "for tests only), or a path to a local .h5 weights file",
    )
    p.add_argument(
        "--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="square input size (default 224)"
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_POLICIES,
        default="pad",
        help="pad to square with the border colour (default: coins are round), centre-crop, or stretch",
    )
    p.add_argument(
        "--engine",
        choices=[*ENGINES, "ray"],
        default="auto",
        help="inference engine: auto (default) is the fastest engine verified equal to Keras "
        "(TFLite+XNNPACK here); 'ray' is deprecated, use --runner ray",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default) or int8: about twice as fast on CPUs with int8 instructions; calibrated "
        "on --calibration train photos and checked against fp32 (cosine, in the summary); int8 and "
        "fp32 vectors never mix",
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=DEFAULT_CALIBRATION,
        metavar="N",
        help=f"with --precision int8: train photos to calibrate on (default {DEFAULT_CALIBRATION})",
    )
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        default="local",
        help="where the work runs: local (this process, default) or ray (Ray actors, local without "
        "--ray-address, into a sharded store)",
    )
    p.add_argument("--ray-address", help="with --runner ray: 'auto' or HOST:PORT of a running Ray cluster")
    p.add_argument("--workers", type=int, default=2, help="with --runner ray: Ray actors (default 2)")
    p.add_argument(
        "--shards", type=int, help="shards of a new store (default: 4 with --runner ray, else one store)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--threads", type=int, help="decode and inference threads (default: all cores)")
    p.add_argument("--limit", type=int, help="embed at most N new images this run")
    p.add_argument("--force", action="store_true", help="discard the store and rebuild it")
    p.add_argument(
        "--group-regex",
        help="regex on the file stem whose first group names photos that "
        "must stay in one split, e.g. '^(.*)_[^_]+$'",
    )
    p.add_argument("--label-names", help="JSON file mapping class folder -> display name")
    p.add_argument("--split", default="70/15/15", help="train/val/test shares when DATA has no splits")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="N",
        help="also cache N augmented views (rotation, flip, zoom, light) of each train photo",
    )
    _common(p)
    p.set_defaults(handler=_run_extract)


def _add_fit_head(commands) -> None:
    from coinfeat.heads import head_types

    types = head_types()
    listing = "; ".join(
        f"{name}: {cls.summary} (params: {', '.join(f'{k}={v}' for k, v in cls.defaults.items())})"
        for name, cls in types.items()
    )
    p = commands.add_parser(
        "fit-head",
        help="train a classifier head on cached vectors (seconds)",
        description="Train a head on the train split of a feature store (the val split drives early "
        "stopping) and save it with the fingerprint of the features it learned from. "
        "With --add, embed new labelled photos and add them to a fitted k-NN head "
        "without refitting.",
        epilog=f"Head types: {listing}",
    )
    p.add_argument("--type", required=True, choices=list(types), help="head type")
    p.add_argument("--features", help="feature store made by extract-features")
    p.add_argument("--out", help="head directory (default artifacts/heads/<dataset>/<type>)")
    p.add_argument(
        "--param",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="head parameters, e.g. --param index=ivfpq nlist=1024 (several at once, or repeated)",
    )
    p.add_argument("--use-augmented", action="store_true", help="also train on cached augmented views")
    _drop_conflicts_option(p)
    p.add_argument("--add", metavar="DATA", help="k-NN only: labelled photos (any dataset layout) to add")
    p.add_argument("--head", help="with --add: the fitted k-NN head to extend")
    _common(p)
    p.set_defaults(handler=_run_fit_head)


def _add_predict(commands) -> None:
    from coinfeat.embedder import TTA_MODES
    from coinfeat.engines import ENGINES
    from coinfeat.predict import DEFAULT_TTA

    p = commands.add_parser(
        "predict",
        help="recognise the coins in photos with a saved head",
        description="Embed each photo with the head's own extractor and print the top-k labels with "
        "their probabilities. Unreadable photos are reported, not fatal. When the photos carry labels "
        "(class folders, a CSV label column) it ends with top-1, top-k and balanced accuracy.",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="photo files, folders (recursive; class folders give labels) or CSV manifests (path,label)",
    )
    p.add_argument(
        "--out", metavar="CSV", help="write one row per photo (top-k labels, names, probabilities)"
    )
    p.add_argument("--head", required=True, help="head directory made by fit-head")
    p.add_argument("--top-k", type=int, default=5, help="how many labels per photo (default 5)")
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=DEFAULT_TTA,
        help="rotations (default, measured to help): average the embeddings at 0/90/180/270 degrees; "
        "none: one pass, 4x faster",
    )
    p.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine (default auto)")
    _common(p)
    p.set_defaults(handler=_run_predict)


def _add_count(commands) -> None:
    from coinfeat.count import CROP_MODES, DEFAULT_THRESHOLD, MARGIN
    from coinfeat.embedder import TTA_MODES
    from coinfeat.engines import ENGINES
    from coinfeat.predict import DEFAULT_TTA

    p = commands.add_parser(
        "count",
        help="find every coin in a whole photo, identify each, and total the money",
        description="Find the coins of each photo (circles, OpenCV), crop each from the full-resolution "
        "photo, identify all crops with the head in one batch, estimate the photo's scale from the "
        "coins' sizes and re-weigh each coin's classes by its diameter, then total the face values per "
        "currency. Coins below the threshold are 'unknown' and not counted.",
        epilog="Euro diameters and values are built in (labels such as 1c, 50c, 2e, '2 Euro', "
        "'1 Cent,Euro,spain'); other coins need --sizes and/or values in their labels or --values.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos of coins lying flat (files or folders)")
    p.add_argument("--head", required=True, help="head directory made by fit-head (or fine-tune)")
    p.add_argument("--sizes", metavar="FILE", help='JSON label -> diameter in mm, e.g. {"10 Kroner": 23.35}')
    p.add_argument(
        "--no-sizes",
        action="store_true",
        help="use the classifier's answer only (a weak head can mislead the scale estimate)",
    )
    p.add_argument(
        "--values",
        metavar="FILE",
        help='JSON label -> {"value": 0.5, "currency": "EUR"} (a bare number means euro); '
        "default: read from the labels",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="a coin whose best probability is below P is unknown "
        f"(default: the head's, else {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=DEFAULT_TTA,
        help="test-time rotations as predict (default rotations)",
    )
    p.add_argument(
        "--crop",
        choices=CROP_MODES,
        default="auto",
        help="how coins are cropped: as the head's training photos frame them (auto, measured by fit-head), "
        "each coin filling its crop (coin), or one physical size for all (fixed; two passes)",
    )
    p.add_argument(
        "--margin",
        type=float,
        help="crop margin on each side, as a share of the coin's diameter (default: measured on the head's "
        f"training photos, else {MARGIN})",
    )
    p.add_argument("--out", metavar="DIR", help="write an annotated PNG per photo here")
    p.add_argument("--engine", choices=ENGINES, default="auto", help="inference engine (default auto)")
    _common(p)
    p.set_defaults(handler=_run_count)


def _drop_conflicts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop-conflicts",
        action="store_true",
        help="leave out of training the photos whose identical copies carry another label",
    )


def _add_compare(commands) -> None:
    from coinfeat.leakage import TWIN_THRESHOLD

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
    _drop_conflicts_option(p)
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
        "--confusion-top",
        type=int,
        metavar="N",
        help="confusion matrices show only the N most confused classes",
    )
    _common(p)
    p.set_defaults(handler=_run_compare)


def _add_similar(commands) -> None:
    from coinfeat.embedder import TTA_MODES
    from coinfeat.search import INDEX_KINDS

    p = commands.add_parser(
        "similar",
        help="show the most similar coins; find duplicates and unknown coins",
        description="For each QUERY (a stored photo's path, or any image file, embedded with the store's "
        "own extractor) list the most similar photos of the collection. --duplicates lists "
        "near-identical pairs (label conflicts, train/test leaks); --calibrate chooses the "
        "similarity below which a query is answered 'no similar coin in the collection'.",
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="image file(s) or stored photo path(s)")
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument("--k", type=int, default=8, help="neighbours per query (default 8)")
    p.add_argument("--split", choices=["train", "all"], default="train", help="which photos to search")
    p.add_argument("--exclude-self", action="store_true", help="leave a stored query out of its own results")
    p.add_argument(
        "--threshold",
        type=float,
        help="similarity below which the answer is 'unknown' (default: the calibrated one, if "
        "any); with --duplicates, the pair threshold (default 0.97)",
    )
    p.add_argument(
        "--tta", choices=TTA_MODES, default="none", help="rotations: average 4 rotations of a query"
    )
    p.add_argument("--index", choices=INDEX_KINDS, default="flat", help="FAISS index (flat is exact)")
    p.add_argument("--sheet", help="write a contact sheet PNG (query and neighbours, or duplicate pairs)")
    p.add_argument("--duplicates", action="store_true", help="list near-duplicate pairs of the collection")
    p.add_argument("--out", help="with --duplicates: folder for duplicates.csv and duplicates.png")
    p.add_argument("--calibrate", action="store_true", help="calibrate the unknown-coin threshold on val")
    p.add_argument(
        "--target-fmr",
        type=float,
        default=0.05,
        help="with --calibrate: target false-match rate for unknown coins (default 0.05)",
    )
    _common(p)
    p.set_defaults(handler=_run_similar)


def _add_finetune(commands) -> None:
    from coinfeat.engines import ENGINES
    from coinfeat.finetune import DEFAULT_CUTS, FinetuneConfig

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
        f"then trains only the top blocks (measured on 2 cores, 1,110 train photos, Lite0: cache 1 min, "
        f"76 s per epoch, 10.5 min in all). Default cuts: {cuts}; .keras files with B0's layer names "
        "(EfficientNet-Lite0) at block5c_add. A lower cut trains more of the network: slower, more "
        "capacity, larger cache. --full trains the whole network from decoded photos with live "
        "augmentation instead: no cache, slow on a CPU, meant for a GPU (Keras uses one when present).",
    )
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument("--cut", help="layer where the trained part starts (default: per backbone, see below)")
    p.add_argument(
        "--views", type=int, default=d.views, help=f"augmented views per train photo (default {d.views})"
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
    p.add_argument("--out", help="output folder (default artifacts/finetuned/<dataset>)")
    p.add_argument("--full", action="store_true", help="train the whole network end to end (for a GPU)")
    p.add_argument("--no-embed", action="store_true", help="do not embed the dataset with the tuned backbone")
    p.add_argument("--embed-out", help="the new store (default: artifacts/features/<dataset>-finetuned)")
    p.add_argument(
        "--engine", choices=ENGINES, default="auto", help="engine for the frozen part (default auto)"
    )
    p.add_argument("--threads", type=int, help="decode and inference threads (default: all cores)")
    _common(p)
    p.set_defaults(handler=_run_finetune)


def _add_export(commands) -> None:
    from coinfeat.export import FORMATS, PRECISIONS

    p = commands.add_parser(
        "export",
        help="write one self-contained model file (backbone + head) for use without coinfeat",
        description="Export a head and its own backbone as one model: a batch of square RGB images "
        "(float 0..255) in, class probabilities out. Writes FILE and FILE.labels.json (class ids, "
        "display names, input size, resize policy). dense, logreg and centroid heads are exported "
        "exactly; k-NN heads are refused (they search every stored vector).",
        epilog="Load it with plain Keras: keras.models.load_model(FILE, compile=False); or with "
        "LiteRT: ai_edge_litert.interpreter.Interpreter(model_path=FILE). See README.md.",
    )
    p.add_argument("--head", required=True, help="head directory made by fit-head (or fine-tune)")
    p.add_argument("--format", choices=FORMATS, default="keras", help="model format (default keras)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="tflite only: int8 is calibrated on the head's train photos (smaller, faster on CPUs)",
    )
    p.add_argument("--out", required=True, help="model file to write (.keras for --format keras)")
    _common(p)
    p.set_defaults(handler=_run_export)


def _add_serve(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="a local web page to identify a coin from a photo",
        description="Serve a page (and its JSON API) where a photo can be dropped or picked from the "
        "collection; it shows the top coins with probabilities and the most similar photos. Its "
        "'count the coins' mode takes a photo of a pile and shows every coin and the total. "
        "Listens on loopback only unless --host says otherwise.",
    )
    p.add_argument("--features", required=True, help="feature store made by extract-features")
    p.add_argument("--head", required=True, help="head directory made by fit-head")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, help="largest accepted photo in MB (default 20)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(handler=_run_serve)


def _add_demo(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="run every stage on the bundled sample of real coin photos",
        description="Run every coinfeat stage on 144 bundled euro-coin photos. Without internet "
        "the ImageNet weights cannot be downloaded: the demo says so and uses random "
        "weights so that the pipeline still runs end to end.",
    )
    p.add_argument("--out", default="artifacts/demo", help="output folder (default artifacts/demo)")
    p.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a .h5 path")
    p.add_argument(
        "--ray",
        action="store_true",
        help="extract on a local Ray instance into a sharded store (needs pip install 'coinfeat[ray]')",
    )
    _common(p)
    p.set_defaults(handler=_run_demo)


def _run_extract(args: argparse.Namespace) -> int:
    from coinfeat.extract import ExtractConfig, extract_features
    from coinfeat.splits import parse_fractions

    engine, runner = args.engine, args.runner
    if engine == "ray":
        print("coinfeat: warning: --engine ray is deprecated; use --runner ray", file=sys.stderr)
        engine, runner = "auto", "ray"
    config = ExtractConfig(
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        resize=args.resize,
        engine=engine,
        precision=args.precision,
        calibration=args.calibration,
        runner=runner,
        workers=args.workers,
        shards=args.shards,
        ray_address=args.ray_address,
        batch_size=args.batch_size,
        threads=args.threads,
        limit=args.limit,
        force=args.force,
        group_regex=args.group_regex,
        label_names=args.label_names,
        split=parse_fractions(args.split),
        seed=args.seed,
        augment=args.augment,
        progress=not (args.quiet or args.json),
    )
    summary = extract_features(args.data, args.out, config)
    _print_summary(summary, args)
    return 0


def _run_fit_head(args: argparse.Namespace) -> int:
    from coinfeat.training import add_to_knn, fit_head, parse_params

    if args.add:
        if not args.head:
            raise CoinfeatError("--add needs --head DIR, the fitted k-NN head to extend")
        result = add_to_knn(args.head, args.add, progress=not (args.quiet or args.json))
        if args.json:
            print(json.dumps(result))
        else:
            classes = ", ".join(result["classes"])
            print(f"added {result['added']} photo(s) to {args.head}; classes now: {classes}")
        return 0
    if not args.features:
        raise CoinfeatError("--features DIR is required (a store made by extract-features)")
    result = fit_head(
        args.features, args.type, parse_params(args.param), args.out, args.use_augmented, args.drop_conflicts
    )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    val = f", val accuracy {result.val_accuracy:.3f}" if result.val_accuracy is not None else ""
    print(
        f"fitted {result.type} head on {result.train} vectors ({len(result.classes)} classes) in "
        f"{result.fit_seconds:.2f}s{val} -> {result.head_dir}"
    )
    if args.drop_conflicts:
        print(f"  left out {result.dropped_conflicts} vector(s) of photos filed under another label too")
    if not result.pretrained:
        print("  WARNING: trained on NOT PRETRAINED features: accuracy is meaningless")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from coinfeat.predict import accuracy, predict_images, write_predictions

    results = predict_images(
        args.images, args.head, args.top_k, args.tta, args.engine, progress=not (args.quiet or args.json)
    )
    scores = accuracy(results)
    written = write_predictions(results, args.out) if args.out else None
    if args.json:
        document = [r.to_dict() for r in results]
        print(
            json.dumps(
                document
                if scores is None and not written
                else {"predictions": document, "accuracy": scores, "csv": str(written) if written else None}
            )
        )
        return 0 if all(r.error is None for r in results) else 1
    shown = results if len(results) <= PRINTED or not written else results[:PRINTED]
    for r in shown:
        print(r.path + (f"  (label: {r.truth})" if r.truth is not None else ""))
        if r.error:
            print(f"  skipped: {r.error}")
            continue
        for rank, (label, name, prob) in enumerate(zip(r.labels, r.names, r.probabilities), 1):
            print(f"  {rank}. {_shown(label, name):<40} {prob:6.1%}")
        _print_parts(r.parts)
    if len(shown) < len(results):
        print(f"... {len(results) - len(shown)} more photos in {written}")
    elif written:
        print(f"written: {written}")
    if scores:
        k = [key for key in scores if key.startswith("top") and key != "top1"]
        topk = f", {k[0]} {scores[k[0]]:.3f}" if k else ""
        print(
            f"accuracy on {scores['photos']} labelled photos: top-1 {scores['top1']:.3f}{topk}, "
            f"balanced {scores['balanced_accuracy']:.3f}"
            + (f" ({scores['unreadable']} unreadable)" if scores["unreadable"] else "")
        )
    return 0 if all(r.error is None for r in results) else 1


def _run_compare(args: argparse.Namespace) -> int:
    from coinfeat.compare import CompareConfig, compare_heads, default_report_dir
    from coinfeat.reports import leakage_line, write_report

    config = CompareConfig(
        heads=[h.strip() for h in args.heads.split(",") if h.strip()],
        top_k=_int_list(args.top_k, "--top-k"),
        params=_head_params(args.param),
        load=dict(_pair(item, "--load") for item in args.load or []),
        use_augmented=args.use_augmented,
        cv=args.cv,
        label_parts=args.label_parts,
        confusion_top=args.confusion_top,
        versus=args.versus,
        test_features=args.test_features,
        twin_threshold=args.twin_threshold,
        drop_conflicts=args.drop_conflicts,
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
        from coinfeat.reports import versus_frame

        print(f"side by side with {comparison.versus.store.path} (balanced accuracy):")
        for row in versus_frame(comparison).itertuples(index=False):
            print(f"  {row.head:<10} {row.balanced:.3f} vs {row.balanced_versus:.3f} ({row.difference:+.3f})")
    print(f"recommended: {comparison.best.name}; report: {report}")
    if not comparison.store.pretrained:
        print("WARNING: NOT PRETRAINED features: these figures are meaningless")
    return 0


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CoinfeatError(f"{option} {text!r}: expected comma-separated whole numbers") from None


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise CoinfeatError(f"{option} {text!r}: expected NAME=VALUE")
    return key.strip(), value.strip()


def _head_params(items: list[str] | None) -> dict[str, dict]:
    from coinfeat.training import parse_params

    params: dict[str, dict] = {}
    for item in items or []:
        head, dot, rest = item.partition(".")
        if not dot:
            raise CoinfeatError(f"--param {item!r}: expected HEAD.KEY=VALUE, e.g. knn.k=5")
        params.setdefault(head, {}).update(parse_params([rest]))
    return params


def _run_similar(args: argparse.Namespace) -> int:
    from coinfeat import similar

    if args.calibrate:
        record = similar.calibrate_unknown(args.features, args.target_fmr)
        print(
            json.dumps(record)
            if args.json
            else f"unknown-coin threshold {record['threshold']:.4f}: false-match rate on val "
            f"{record['false_match_rate_val']:.3f} (target {args.target_fmr}), known coins accepted "
            f"{record['known_accepted_rate_val']:.3f}; saved with the store"
        )
        return 0
    if args.duplicates:
        return _print_duplicates(similar.find_duplicates(args.features, args.threshold or 0.97), args)
    if not args.queries:
        raise CoinfeatError("give at least one QUERY image, or --duplicates, or --calibrate")
    results = similar.find_similar(
        args.queries,
        args.features,
        args.k,
        args.split,
        args.exclude_self,
        args.threshold,
        args.tta,
        args.index,
    )
    for n, result in enumerate(results):
        if args.sheet and not result.error:
            sheet = Path(args.sheet)
            similar.similar_sheet(
                result, sheet if len(results) == 1 else sheet.with_stem(f"{sheet.stem}_{n + 1}")
            )
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        for result in results:
            _print_similar(result)
    return 0 if all(r.error is None for r in results) else 1


def _run_count(args: argparse.Namespace) -> int:
    from coinfeat.count import count_coins
    from coinfeat.predict import collect_photos

    photos = [path for path, _ in collect_photos(args.photos)]
    results = count_coins(
        photos,
        args.head,
        False if args.no_sizes else args.sizes,
        args.values,
        args.threshold,
        args.tta,
        args.out,
        args.margin,
        args.engine,
        progress=not (args.quiet or args.json),
        crop=args.crop,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        for result in results:
            _print_count(result)
    return 0 if all(r.error is None for r in results) else 1


def _print_count(result) -> None:
    from coinfeat.money import format_total

    print(f"{result.path}: {result.message}")
    if result.coins:
        print(f"  {'#':>3}  {'centre':>11}  {'px':>5}  {'mm':>5}  {'coin':<24} {'prob':>5}  value")
    for c in result.coins:
        mm = f"{c.diameter_mm:5.1f}" if c.diameter_mm else "    -"
        coin = "unknown" if c.unknown else _shown(c.label, c.name)
        value = f"{c.value:g} {c.currency}" if c.value is not None and not c.unknown else "-"
        changed = (
            "  (sizes changed it from {})".format(c.classifier["label"])
            if (c.with_sizes and c.with_sizes["label"] != c.classifier["label"])
            else ""
        )
        print(
            f"  {c.number:>3}  {c.x:>5.0f},{c.y:<5.0f}  {c.diameter_px:>5.0f}  {mm}  {coin:<24} "
            f"{c.probability:>5.0%}  {value}{changed}"
        )
    if result.coins:
        scale = f"{result.scale_px_per_mm:.2f} px/mm" if result.scale_px_per_mm else "not estimated"
        print(
            f"  total: {format_total(result.total)}   (scale {scale}; answer from {result.answer}; "
            f"{result.crops} crops)"
        )
        if "with_sizes" in result.totals:
            print(f"  classifier alone would say: {format_total(result.totals['classifier'])}")
    if result.unpriced:
        print(f"  no known value for: {', '.join(result.unpriced)} (give --values)")
    if result.dropped:
        print(f"  {len(result.dropped)} circle(s) dropped (duplicates, border cuts, background); see --json")
    if result.annotated:
        print(f"  annotated: {result.annotated}")
    if not result.pretrained:
        print("  WARNING: NOT PRETRAINED features: the labels are meaningless")


def _print_similar(result) -> None:
    print(result.query)
    if result.error:
        print(f"  skipped: {result.error}")
        return
    if result.unknown:
        print(f"  no similar coin in the collection (best similarity below {result.threshold:.3f})")
    for n in result.neighbours:
        print(f"  {n.rank:>2}. {_shown(n.label, n.name):<30} {n.similarity:6.3f}  {n.path}")
    _print_parts(result.parts, "neighbours say ")


def _shown(label: str, name: str) -> str:
    """A class as a person reads it: display name first, the class id after it when they differ."""
    return f"{name} ({label})" if name != label else label


def _print_parts(parts: dict, lead: str = "") -> None:
    if parts:
        print(
            "     " + lead + "; ".join(f"{k}: {v['value']} {v['probability']:.0%}" for k, v in parts.items())
        )


def _print_duplicates(pairs, args: argparse.Namespace) -> int:
    from coinfeat import similar

    csv, sheet = similar.write_duplicates(pairs, args.features, args.out, args.sheet)
    if args.json:
        print(
            json.dumps(
                {
                    "pairs": len(pairs),
                    "label_conflicts": int(pairs["label_conflict"].sum()),
                    "cross_split": int(pairs["cross_split"].sum()),
                    "csv": str(csv),
                    "sheet": str(sheet),
                }
            )
        )
        return 0
    print(
        f"{len(pairs)} near-duplicate pair(s): {int(pairs['label_conflict'].sum())} with different labels "
        f"(likely label noise), {int(pairs['cross_split'].sum())} across splits (leakage)"
    )
    for row in pairs.head(20).itertuples(index=False):
        flag = "LABEL CONFLICT " if row.label_conflict else "LEAK " if row.cross_split else ""
        print(f"  {flag}{row.similarity:.3f}  {row.name_a}: {row.path_a}  ~  {row.name_b}: {row.path_b}")
    print(f"written: {csv}, {sheet}")
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    from coinfeat.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        cut=args.cut,
        views=args.views,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        patience=args.patience,
        full=args.full,
        embed=not args.no_embed,
        embed_out=args.embed_out,
        engine=args.engine,
        threads=args.threads,
        progress=not (args.quiet or args.json),
    )
    result = finetune(args.features, args.out, config)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    cache = (
        f", cache {result.cache_rows} rows ({result.cache_reused} reused)" if result.mode == "cached" else ""
    )
    print(
        f"fine-tuned {f'above {result.cut}' if result.cut else 'end to end'}: {result.epochs_run} epoch(s), "
        f"best {result.best_epoch}, val loss {result.val_loss:.3f}, val accuracy {result.val_accuracy:.3f}, "
        f"balanced {result.val_balanced_accuracy:.3f}{cache}"
    )
    print("  seconds: " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items()))
    print(f"  backbone: {result.backbone}  (use as --backbone)")
    print(f"  head:     {result.head_dir}  (use with predict, serve, compare --load)")
    if result.store:
        print(f"  store:    {result.store}  (embedded with the tuned backbone)")
    print(f"  curves:   {Path(result.out) / 'curves.png'}")
    for note in result.notes:
        print(f"  note: {note}")
    if not result.pretrained:
        print("  WARNING: NOT PRETRAINED base weights: the tuned network is for testing only")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from coinfeat.export import export_head

    result = export_head(args.head, args.out, args.format, args.precision)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"exported {result.classes} classes ({result.format}, {result.precision}, "
            f"{result.size_bytes / 1e6:.1f} MB) -> {result.model}; labels and preprocessing: {result.labels}"
        )
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from coinfeat.serve import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"coinfeat: warning: listening on {args.host}: other machines can reach this page",
            file=sys.stderr,
        )
    print(
        f"coinfeat: loading, then serving on http://{args.host}:{args.port}/ (Ctrl+C stops)", file=sys.stderr
    )
    options = {"max_upload_mb": args.max_upload_mb} if args.max_upload_mb else {}
    serve(args.features, args.head, args.host, args.port, **options)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from coinfeat.demo import run_demo

    result = run_demo(
        args.out,
        args.weights,
        progress=not (args.quiet or args.json),
        announce=lambda text: print(text, file=sys.stderr),
        ray=args.ray,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "extract": result.extract.to_dict(),
                    "heads": [h.to_dict() for h in result.heads],
                    "predictions": [p.to_dict() for p in result.predictions],
                    "report": str(result.report),
                    "finetuned": result.finetuned.to_dict() if result.finetuned else None,
                    "count": result.counted.to_dict() if result.counted else None,
                }
            )
        )
        return 0
    _print_summary(result.extract, args)
    print("heads (validation accuracy):")
    for head in result.heads:
        val = f"{head.val_accuracy:.3f}" if head.val_accuracy is not None else "n/a"
        print(f"  {head.type:<10} {val}  fit {head.fit_seconds:.2f}s -> {head.head_dir}")
    print("predictions on test photos (best head):")
    for p in result.predictions:
        top = ", ".join(f"{label} {prob:.0%}" for label, prob in zip(p.labels, p.probabilities))
        print(f"  {Path(p.path).parent.name}/{Path(p.path).name}: {top or p.error}")
    if not result.pretrained:
        print("WARNING: NOT PRETRAINED weights: the accuracies above are meaningless")
    print(f"head comparison report: {result.report}")
    if result.similar:
        nearest = ", ".join(f"{n.label} {n.similarity:.2f}" for n in result.similar.neighbours)
        print(f"most similar to {Path(result.similar.query).name}: {nearest} (contact sheet {result.sheet})")
    if result.finetuned:
        tuned = result.finetuned
        print(
            f"fine-tuned above {tuned.cut} ({tuned.epochs_run} epochs, {tuned.views} views): val balanced "
            f"accuracy {tuned.val_balanced_accuracy:.3f}; backbone {tuned.backbone}, head {tuned.head_dir}"
        )
    if result.counted:
        counted = result.counted
        flag = "" if counted.pretrained else " (NOT PRETRAINED: labels and total are meaningless)"
        print(f"counted {Path(counted.path).name} (truth: 29 coins, 10.10 EUR): {counted.message}{flag}")
        print(f"  annotated photo: {result.counted.annotated}")
    print(f"demo finished: outputs in {result.out}")
    return 0


def _print_summary(summary, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary.to_dict()))
        return
    print(
        f"embedded {summary.embedded}, reused {summary.reused}, skipped {summary.skipped} "
        f"(total {summary.total}) in {summary.seconds:.1f}s -> {summary.store}"
    )
    if summary.pending:
        print(f"  {summary.pending} image(s) not embedded yet (--limit): run again to continue")
    if summary.views:
        print(
            f"  {summary.views} augmented view(s) of train photos cached (used by fit-head --use-augmented)"
        )
    if summary.removed:
        print(f"  {summary.removed} item(s) dropped: their files are gone")
    splits = ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items()))
    print(f"  splits: {splits}")
    print(f"  backbone: {summary.backbone}; engine {summary.engine or 'not needed'}")
    for reason, count in summary.skipped_reasons.items():
        print(f"  skipped {count}: {reason}")
    for note in summary.notes:
        print(f"  note: {note}")
    if not summary.pretrained:
        print("  WARNING: NOT PRETRAINED weights: these vectors are for testing only")


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("coinfeat: %(message)s"))
    logger = logging.getLogger("coinfeat")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    debug = args.debug
    _configure_logging(debug, getattr(args, "quiet", False) or getattr(args, "json", False))
    try:
        return args.handler(args)
    except CoinfeatError as exc:
        if debug:
            raise
        print(f"coinfeat: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coinfeat: interrupted; finished batches are kept and the next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
