"""What every command module shares: common options, how classes and label parts are printed, progress."""

from __future__ import annotations

import argparse

from coinfeat.core.errors import CoinfeatError


def common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and per-batch timings",
    )


def drop_conflicts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop-conflicts",
        action="store_true",
        help="leave out of training the photos whose identical copies carry another label",
    )


def int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CoinfeatError(f"{option} {text!r}: expected comma-separated whole numbers") from None


def pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise CoinfeatError(f"{option} {text!r}: expected NAME=VALUE")
    return key.strip(), value.strip()


def shown(label: str, name: str) -> str:
    """A class as a person reads it: display name first, the class id after it when they differ."""
    return f"{name} ({label})" if name != label else label


def print_parts(parts: dict, lead: str = "") -> None:
    if parts:
        print(
            "     " + lead + "; ".join(f"{k}: {v['value']} {v['probability']:.0%}" for k, v in parts.items())
        )


def wants_progress(args: argparse.Namespace) -> bool:
    """Progress unless --quiet or --json (where it would mix with the one JSON object)."""
    return not (getattr(args, "quiet", False) or getattr(args, "json", False))
