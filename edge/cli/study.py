"""``capsule-edge study ...``: look at, check, export and rebuild a study folder.

Exit status: 0 done; 1 the study has problems (each named on its own line); 2 the study
cannot be used at all (one line). Everything but ``rebuild`` only reads: a read-only
connection, no lock, nothing created but a line in the study's ``audit.log`` (who read
it, when, what they took out), so a study a runtime is writing can be looked at.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.study import audit, database

Command = Callable[[argparse.Namespace], int]


def _one_line(cmd: Command) -> Command:
    """A database that fails while being read is a one-line error, like one that
    cannot be opened (``main`` prints a StudyError and exits 2)."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        from edge.study.errors import StudyError

        try:
            return cmd(args)
        except database.DatabaseError as exc:
            where = getattr(args, "study", None) or getattr(args, "dir", "")
            raise StudyError(f"{where}: study.db: damaged or unreadable ({exc})") from None

    return run


@_one_line
def cmd_ls(args: argparse.Namespace) -> int:
    from edge.study.errors import StudyError
    from edge.study.view import find_studies, ls_line

    root: Path = args.dir
    if not root.is_dir():
        raise StudyError(f"{root}: no such folder")
    found = 0
    for folder in find_studies(root):
        found += 1
        print(ls_line(folder), flush=True)
    if not found:
        print(f"no studies under {root}", file=sys.stderr)
    return 0


@_one_line
def cmd_show(args: argparse.Namespace) -> int:
    from edge.study.view import show, show_text

    info = show(args.study)
    audit.record(args.study, "show")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(show_text(info)))
    return 0


@_one_line
def cmd_verify(args: argparse.Namespace) -> int:
    from edge.study.verify import verify

    report = verify(args.study)
    audit.record(args.study, "verify", ok=report.ok, frames=report.frames)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.text()))
    return 0 if report.ok else 1


@_one_line
def cmd_export(args: argparse.Namespace) -> int:
    from edge.study.export import export_findings, export_frames

    if args.frames is None and args.findings is None:
        print(
            "capsule-edge: study export: give --frames DIR, --findings FILE or both",
            file=sys.stderr,
        )
        return 2
    status = 0
    if args.frames is not None:  # an encrypted study without its key: one line, nothing written
        from edge.study.archive import Reader
        from edge.study.readonly import open_study

        with open_study(args.study):  # not a study: its own one line, before the key's
            pass
        Reader(args.study / "archive").check_key()
    if args.findings is not None:
        rows, empty = export_findings(args.study, args.findings, args.deidentify)
        audit.record(
            args.study, "export findings", to=args.findings.resolve(), rows=rows,
            deidentified=args.deidentify,
        )  # fmt: skip
        print(f"findings: {rows} rows, {empty} frames with none (a row each), in {args.findings}")
    if args.frames is not None:
        done = export_frames(args.study, args.frames, args.deidentify)
        audit.record(
            args.study, "export frames", to=args.frames.resolve(), result=done.line(args.frames),
            deidentified=args.deidentify,
        )  # fmt: skip
        print(done.line(args.frames))
        status = 1 if done.kept or done.corrupt else 0
    return status


def cmd_audit(args: argparse.Namespace) -> int:
    from edge.study.errors import StudyError

    if not (args.study / "study.db").is_file():
        raise StudyError(f"{args.study}: not a study folder (no study.db)")
    trail = audit.entries(args.study)
    if args.json:
        print(json.dumps(trail, indent=1))
        return 0
    for e in trail:
        if "unreadable" in e:
            print(f"(unreadable line) {e['unreadable']}")
            continue
        extra = ", ".join(
            f"{k} {v}" for k, v in e.items() if k not in ("at", "user", "uid", "host", "action")
        )
        print(
            f"{e['at']}  {e['user']}@{e['host']}  {e['action']}" + (f"  ({extra})" if extra else "")
        )
    if not trail:
        print(f"{args.study}: no reads recorded", file=sys.stderr)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from edge.study import sealing

    ident = sealing.new_key_file(args.file)
    print(
        f'key {ident} in {args.file}: studies run with [storage] key_file = "{args.file}" '
        "are encrypted with it; without it their frames cannot be read, so keep a copy safe"
    )
    return 0


@_one_line
def cmd_rebuild(args: argparse.Namespace) -> int:
    from edge.study.rebuild import rebuild

    done = rebuild(args.study, plain=args.plain)
    print("\n".join(done.text(args.study)))
    return 1 if done.problems else 0


def key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", type=Path, help="an encrypted study's key file (or $CAPSULE_EDGE_STUDY_KEY)"
    )


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("study", help="look at, check, export or rebuild a study folder")
    ssub = s.add_subparsers(dest="study_command", required=True)

    ls = ssub.add_parser("ls", help="the studies under a folder, one line each")
    ls.add_argument("dir", nargs="?", type=Path, default=Path("."), help="default: .")
    key_option(ls)
    ls.set_defaults(func=cmd_ls)

    show = ssub.add_parser("show", help="runs, settings, models, counts, ledger, sessions")
    show.add_argument("study", type=Path)
    show.add_argument("--json", action="store_true", help="as JSON")
    key_option(show)
    show.set_defaults(func=cmd_show)

    verify = ssub.add_parser(
        "verify",
        help="every frame against its CRC, every record indexed once, ledger and findings "
        "consistent; exit 1 naming each problem",
    )
    verify.add_argument("study", type=Path)
    verify.add_argument("--json", action="store_true", help="as JSON")
    key_option(verify)
    verify.set_defaults(func=cmd_verify)

    export = ssub.add_parser("export", help="frames as files, findings as CSV or JSON")
    export.add_argument("study", type=Path)
    key_option(export)
    export.add_argument(
        "--frames", type=Path, metavar="DIR", help="write <session>-<index>.<ext> files here"
    )
    export.add_argument(
        "--findings", type=Path, metavar="FILE", help="a .csv or .json file (not replaced)"
    )
    export.add_argument(
        "--deidentify",
        action="store_true",
        help="without what could name the patient, the recorder or the day: frame metadata "
        "(EXIF, comments, PNG text), recorder session numbers, dates, file origins",
    )
    export.set_defaults(func=cmd_export)

    trail = ssub.add_parser("audit", help="who read the study, when, and what they took out")
    trail.add_argument("study", type=Path)
    trail.add_argument("--json", action="store_true", help="as JSON")
    trail.set_defaults(func=cmd_audit)

    keygen = ssub.add_parser(
        "keygen", help="a new key for encrypted studies ([storage] key_file; keep it elsewhere)"
    )
    keygen.add_argument("file", type=Path, help="written owner-only; never overwritten")
    keygen.set_defaults(func=cmd_keygen)

    rebuild = ssub.add_parser(
        "rebuild", help="recover study.db's index from the archive (the old one is kept)"
    )
    rebuild.add_argument("study", type=Path)
    key_option(rebuild)
    rebuild.add_argument(
        "--plain",
        action="store_true",
        help="the study was made without a key: rebuild it even when its study.db is not "
        "plain SQLite (damaged; without its key an encrypted one looks the same)",
    )
    rebuild.set_defaults(func=cmd_rebuild)
