"""The ``coinfeat`` command line: one module per command, each parsing its arguments,
calling the library and printing the result; :mod:`.output` holds what they share."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from coinfeat import __version__
from coinfeat.cli import (
    compare,
    count,
    demo,
    enrol,
    export,
    extract,
    finetune,
    fit_head,
    models,
    predict,
    serve,
    similar,
)
from coinfeat.core.errors import CoinfeatError

EPILOG = "Run `coinfeat COMMAND --help` for a command's options. Manual: docs/ (mkdocs serve)."
COMMANDS = (count, predict, serve, models, extract, fit_head, enrol, compare, similar, finetune, export, demo)


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
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def command_help(name: str, width: int = 100) -> str:
    """What ``coinfeat NAME --help`` prints in a terminal ``width`` columns wide; the manual's command
    reference is made from it, so the two cannot drift apart."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        parser = build_parser()
        if name == "coinfeat":
            return parser.format_help()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if name not in subparsers.choices:
            raise CoinfeatError(f"no command {name!r}; commands: {', '.join(subparsers.choices)}")
        return subparsers.choices[name].format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def command_names() -> list[str]:
    """The commands, in the order ``coinfeat --help`` lists them."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


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
