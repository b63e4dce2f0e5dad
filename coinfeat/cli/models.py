"""``coinfeat models``: the built-in models and their cards."""

from __future__ import annotations

import argparse
import json

from coinfeat.cli.output import common_options


def add_parser(commands) -> None:
    p = commands.add_parser(
        "models",
        help="list the built-in models, or show one's card (data, licences, how it was made, figures)",
        description="Built-in models ship inside coinfeat, so predict, count and serve answer before "
        "you train anything (--head NAME; euro when --head is left out). Each is checked against the "
        "sha256 its card records before it is loaded.",
    )
    p.add_argument("name", nargs="?", help="a built-in model: show its card")
    common_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from coinfeat.core.heads.builtin import builtin_head, builtin_models, model_card

    if args.name:
        card, text = model_card(args.name)
        builtin_head(args.name)  # checks every file against the card
        print(json.dumps({"card": text, **card.__dict__}) if args.json else text.rstrip())
        return 0
    cards = [model_card(name)[0] for name in builtin_models()]
    if args.json:
        print(json.dumps([card.__dict__ for card in cards]))
        return 0
    for card in cards:
        print(f"{card.name:<8} {card.title}")
    print("Show a card: coinfeat models NAME. Use one: --head NAME (euro is the default).")
    return 0
