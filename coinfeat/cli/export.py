"""``coinfeat export``: a head and its backbone as one model file."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import (
    common_options,
)


def add_parser(commands) -> None:
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
        default=None,
        help="default: the precision of the head's own extractor (int8 for a head fitted on an int8 "
        "store), so the file answers as predict does. tflite only: int8 is calibrated on the same "
        "photos as that store (or the head's train photos), smaller and faster on CPUs",
    )
    p.add_argument("--out", required=True, help="model file to write (.keras for --format keras)")
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.export import export_head

    result = export_head(args.head, args.out, format=args.format, precision=args.precision)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"exported {result.classes} classes ({result.format}, {result.precision}, "
            f"{result.size_bytes / 1e6:.1f} MB) -> {result.model}; labels and preprocessing: {result.labels}"
        )
    return 0
