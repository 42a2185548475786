"""``capsule-edge report STUDY``: the study report (HTML) and its JSON twin."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.cli.study import key_option
from edge.errors import BadInputError


def cmd_report(args: argparse.Namespace) -> int:
    from edge.reading.analysis import ReadingSettings, read_study
    from edge.reading.events import TrackerSettings
    from edge.reading.report import write

    if args.confirm is not None and args.confirm < 1:
        raise BadInputError(f"--confirm {args.confirm}: at least 1 frame")
    tracker = (
        TrackerSettings() if args.confirm is None else TrackerSettings(confirm_frames=args.confirm)
    )
    out = args.out or args.study
    from edge.study import sealing

    if sealing.is_sealed(args.study) and out.resolve().is_relative_to(args.study.resolve()):
        raise BadInputError(
            f"{args.study}: encrypted, and its report shows frames in the clear: "
            "give --out DIR outside the study"
        )
    reading = read_study(
        args.study, ReadingSettings(fps=args.fps, mm_per_px=args.mm_per_px, tracker=tracker)
    )
    html = out / "report.html"
    data = write(reading, html, None if args.json == Path("-") else args.json)
    from edge.study import audit

    audit.record(args.study, "report", to=html.resolve(), json=args.json)
    if args.json == Path("-"):
        json.dump(data, sys.stdout, indent=1)
        print()
    kinds = ", ".join(f"{n} {k} event(s)" for k, n in data["events_by_kind"].items()) or "no events"
    print(
        f"report: {html} ({data['frames']} frames, {len(data['segments'])} segments, "
        f"{data['polyps']} distinct polyp(s); {kinds})",
        file=sys.stderr,
    )
    return 0


def add_parsers(sub: Any) -> None:
    r = sub.add_parser(
        "report",
        help="write a study's report: timeline, distinct findings, link health (an aid to "
        "reading, not a diagnosis)",
    )
    r.add_argument("study", type=Path, help="the study folder")
    key_option(r)
    r.add_argument("--out", type=Path, help="folder for report.html (default: the study folder)")
    r.add_argument("--json", type=Path, help="write the report's JSON twin here ('-': stdout)")
    r.add_argument(
        "--fps", type=float, help="the frame rate, when the frames carry no capture time"
    )
    r.add_argument("--mm-per-px", type=float, help="a calibration: box sizes in mm too")
    r.add_argument("--confirm", type=int, help="frames with a box before a finding is an event")
    r.set_defaults(func=cmd_report)
