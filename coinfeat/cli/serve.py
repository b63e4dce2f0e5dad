"""``coinfeat serve``: the local web page."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="a local web page to identify a coin from a photo",
        description="Serve a page (and its JSON API) where a photo can be dropped (or, with --features, "
        "picked from the collection); it shows the top coins with probabilities, the answer set, and "
        "with --features the most similar photos of the collection. Its 'count the coins' mode takes "
        "a photo of a pile and shows every coin and the total. With no options it serves the built-in "
        "euro model. Listens on loopback only unless --host says otherwise.",
    )
    p.add_argument(
        "--features", help="feature store made by extract-features: its photos are shown as similar coins"
    )
    p.add_argument(
        "--head", help="head directory made by fit-head or fine-tune, or a built-in model (default: euro)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, help="largest accepted photo in MB (default 20)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
    serve(args.features, args.head, host=args.host, port=args.port, **options)
    return 0
