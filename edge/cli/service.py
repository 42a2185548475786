"""``capsule-edge service install|status|uninstall``: the study as a systemd service."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from edge.errors import BadInputError


def cmd_service(args: argparse.Namespace) -> int:
    from edge.service import install

    if args.action == "status":
        done = subprocess.run(["systemctl", "status", "--no-pager", install.UNIT_NAME], check=False)
        return done.returncode
    if args.root is None and not args.dry_run and os.geteuid() != 0:
        raise BadInputError(f"service {args.action}: needs root (sudo), or --root DIR / --dry-run")
    plan = (
        install.install_plan(install.venv_of_this_install(), args.root)
        if args.action == "install"
        else install.uninstall_plan(args.root)
    )
    return install.carry_out(plan, run_commands=args.root is None, dry_run=args.dry_run)


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("service", help="install, look at or remove the systemd service")
    s.add_argument("action", choices=("install", "status", "uninstall"))
    s.add_argument("--root", type=Path, help="write the files under this folder; run nothing")
    s.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    s.set_defaults(func=cmd_service)
