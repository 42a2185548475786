"""``capsule-edge doctor``: is this machine ready for a study? Exit 1 if it is not."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge.cli.run import add_common, overrides


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.doctor import FAIL, as_json, run_checks
    from edge.runtime import config as settings

    config = settings.load(args.config, overrides(args))
    checks = run_checks(config)
    if args.json:
        json.dump(as_json(checks), sys.stdout, indent=1)
        print()
    else:
        for check in checks:
            print(check.line())
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        print(
            f"doctor: {len(failed)} check(s) failed: a study would not start or not last",
            file=sys.stderr,
        )
        return 1
    return 0


def add_parsers(sub: Any) -> None:
    d = sub.add_parser(
        "doctor", help="check backends, accelerators, models, the recorder's port, disk and clock"
    )
    d.add_argument("--source", help="the recorder, as for run (serial:///dev/ttyACM0, ...)")
    d.add_argument("--json", action="store_true", help="the checks as JSON on stdout")
    add_common(d)
    d.set_defaults(func=cmd_doctor)
