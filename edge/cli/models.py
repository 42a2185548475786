"""``capsule-edge models``: the bundled models and their checksums."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_models(args: argparse.Namespace) -> int:
    from edge.bundled import PROFILES, base_name, bundled_cards, qualified_name

    cards = bundled_cards()
    print(f"{'name (--model)':<28}{'task':<16}{'format':<10}{'precision':<11}{'size':>10}  sha256")
    for card in cards:
        size = card.size_bytes()
        print(
            f"{qualified_name(card):<28}{card.task:<16}{card.format:<10}{card.precision:<11}"
            f"{size / 1e6:>8.2f}MB  {card.sha256}"
        )
    if not cards:
        print("no bundled models", file=sys.stderr)
        return 0
    families = ", ".join(dict.fromkeys(base_name(c) for c in cards))
    print(f"\n--model also takes a model's name alone ({families}): the artefact the backend")
    print("runs best (its own format, int8 first). Profiles (--profile, profile = ...):")
    for profile, roles in PROFILES.items():
        chosen = ", ".join(f"{role} {name}" for role, name in roles.items() if name)
        print(f"  {profile}: {chosen}")
    return 0


def add_parsers(sub: Any) -> None:
    m = sub.add_parser("models", help="list the bundled models")
    m.set_defaults(func=cmd_models)
