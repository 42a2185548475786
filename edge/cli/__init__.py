"""capsule-edge: the on-device runtime's command line, a module per subcommand.

Each subcommand's module imports what it runs when it runs, so that ``--help`` and the
commands that need no model start on a bare install."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys

from edge.cli import (
    bench,
    classify,
    demo,
    detect,
    doctor,
    models,
    report,
    run,
    service,
    simulate,
    study,
)
from edge.errors import CapsuleEdgeError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("capsule-edge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capsule-edge", description="capsule-edge: the on-device runtime's command line."
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"capsule-edge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("eval", help="measure a model on labelled data")
    esub = e.add_subparsers(dest="task", required=True)
    classify.add_parsers(sub, esub)
    detect.add_parsers(sub, esub)
    simulate.add_parsers(sub)
    run.add_parsers(sub)
    demo.add_parsers(sub)
    study.add_parsers(sub)
    report.add_parsers(sub)
    models.add_parsers(sub)
    bench.add_parsers(sub)
    doctor.add_parsers(sub)
    service.add_parsers(sub)
    return parser


def _keep_odd_names(*streams: object) -> None:
    """Print a file name that is not UTF-8 as its own bytes (as ls does) instead of
    failing on it with UnicodeEncodeError, whatever the locale."""
    for stream in streams:
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _keep_odd_names(sys.stdout, sys.stderr)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from edge.study import sealing

        sealing.use_key(getattr(args, "key", None))  # --key FILE, else $CAPSULE_EDGE_STUDY_KEY
        return int(args.func(args))
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CapsuleEdgeError, OSError) as exc:
        print(f"capsule-edge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not bad input: one line, the traceback with -v
        logging.getLogger("capsule-edge").info("internal error", exc_info=True)
        print(
            f"capsule-edge: internal error: {type(exc).__name__}: {exc} "
            "(a bug: please report it with the output of -v)",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE
