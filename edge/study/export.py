"""``study export``: a study's frames as files, its findings as CSV or JSON.

Frames are written as received, each checked against its CRC-32C, named
``<session>-<index>.<ext>`` (ext from the codec). An existing file is never replaced: one
with the same bytes counts as already exported, a different one is kept and counted.

The findings file has one row per finding, and one row (with no model or label) for
every frame that has none, carrying its inference status: a frame looked at with
nothing found ("done") must not read like one never looked at ("not inferred").
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge.study import sealing
from edge.study.archive import Reader
from edge.study.deidentify import strip
from edge.study.errors import CorruptFrameError, StudyError
from edge.study.readonly import StudyView, open_study
from edge.study.store import FrameRef, read_frame

# The recorder codecs (firmware_bridge.protocol.Codec), not imported: the study store
# stands on its own.
EXTENSIONS = {0: "rgb", 1: "jpg", 2: "png", 3: "raw"}
FIELDS = (
    "session",
    "index",
    "timestamp_us",
    "origin",
    "status",
    "model",
    "label",
    "score",
    "x0",
    "y0",
    "x1",
    "y1",
)


@dataclass
class FramesExported:
    written: int = 0
    same: int = 0  # already there with the same bytes
    kept: list[str] = field(default_factory=list)  # a different file of that name kept
    corrupt: list[str] = field(default_factory=list)  # bytes not matching their CRC

    def line(self, folder: Path) -> str:
        out = f"frames: {self.written} written to {folder}, {self.same} already there"
        if self.kept:
            out += (
                f", {len(self.kept)} not written: a different file of that name is there "
                f"(kept; e.g. {', '.join(self.kept[:3])})"
            )
        if self.corrupt:
            out += (
                f", {len(self.corrupt)} not written: bytes not matching their CRC-32C "
                f"({', '.join(self.corrupt[:3])}; see `capsule-edge study verify`)"
            )
        return out


def export_frames(study: Path, out: Path, deidentify: bool = False) -> FramesExported:
    """The frames as files; ``deidentify``: without their metadata, sessions renumbered
    (``edge.study.deidentify``)."""
    done = FramesExported()
    with open_study(study) as view:
        reader = Reader(view.archive_dir)
        reader.check_key()  # an encrypted study without its key: one line, nothing written
        sealed = sealing.is_sealed(view.folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudyError(f"{out}: cannot create the folder ({exc.strerror})") from None
        sessions = _session_numbers(view) if deidentify else {}
        try:
            for ref in _refs(view):
                session = sessions.get(ref.session, ref.session)
                name = f"{session}-{ref.index}.{EXTENSIONS.get(ref.codec, 'bin')}"
                try:
                    data = read_frame(reader, ref)
                except CorruptFrameError:
                    done.corrupt.append(f"{ref.session}:{ref.index}")
                    continue
                except OSError as exc:
                    raise StudyError(f"{study}: frame {ref.session}:{ref.index}: {exc}") from None
                # An encrypted study's frames come out owner-only.
                data = strip(data, ref.codec) if deidentify else data
                _write_new(out / name, data, done, 0o600 if sealed else 0o644)
        finally:
            reader.close()
    return done


def _session_numbers(view: StudyView) -> dict[int, int]:
    """Each recorder session as 1, 2, ... in the order the study holds them."""
    rows = view.db.execute("SELECT DISTINCT session FROM frames ORDER BY session")
    return {s: n for n, (s,) in enumerate(rows, 1)}


def _refs(view: StudyView) -> Iterator[FrameRef]:
    crc = "crc" if "crc" in view.columns("frames") else "NULL"
    for row in view.db.execute(
        f"SELECT session, idx, segment, offset, length, codec, width, height, {crc} "
        "FROM frames ORDER BY session, idx"
    ):
        yield FrameRef(*row)


def _write_new(path: Path, data: bytes, done: FramesExported, mode: int = 0o644) -> None:
    """Write ``path`` only if no file has that name (``O_EXCL``: not even one made
    between the check and the write)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        try:
            same = path.stat().st_size == len(data) and path.read_bytes() == data
        except OSError:
            same = False
        if same:
            done.same += 1
        else:
            done.kept.append(path.name)
        return
    except OSError as exc:
        raise StudyError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()  # ours, half-written
        raise StudyError(f"{path}: cannot write ({exc.strerror})") from None
    done.written += 1


def export_findings(study: Path, out: Path, deidentify: bool = False) -> tuple[int, int]:
    """Write the findings file; returns (finding rows, frames without findings).
    ``deidentify``: sessions renumbered, times from the first frame, no origins."""
    kind = out.suffix.lower()
    if kind not in (".csv", ".json"):
        raise StudyError(f"{out}: the findings file must end in .csv or .json")
    if out.exists():
        raise StudyError(f"{out}: already exists; not replaced")
    tmp = out.with_name(f".{out.name}.part")
    with open_study(study) as view:
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                rows = _deidentified(view, _rows(view)) if deidentify else _rows(view)
                found = _write_rows(f, kind, rows)
            os.replace(tmp, out)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StudyError(f"{out}: cannot write ({exc.strerror})") from None
    return found


def _rows(view: StudyView) -> Iterator[dict[str, Any]]:
    origin = "f.origin" if "origin" in view.columns("frames") else "NULL"
    for row in view.db.execute(
        f"SELECT f.session, f.idx, f.timestamp_us, {origin}, "
        "COALESCE(i.status, 'not inferred'), d.model, d.label, d.score, d.x0, d.y0, d.x1, d.y1 "
        "FROM frames f LEFT JOIN inference i ON i.session = f.session AND i.idx = f.idx "
        "LEFT JOIN findings d ON d.session = f.session AND d.idx = f.idx "
        "ORDER BY f.session, f.idx, d.rowid"
    ):
        yield dict(zip(FIELDS, row, strict=True))


def _deidentified(view: StudyView, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    sessions = _session_numbers(view)
    (first,) = view.db.execute("SELECT MIN(timestamp_us) FROM frames").fetchone()
    for row in rows:
        yield row | {
            "session": sessions[row["session"]],
            "timestamp_us": row["timestamp_us"] - (first or 0),
            "origin": None,
        }


def _write_rows(f: TextIO, kind: str, rows: Iterator[dict[str, Any]]) -> tuple[int, int]:
    findings = empty = 0
    writer = csv.DictWriter(f, FIELDS) if kind == ".csv" else None
    if writer is not None:
        writer.writeheader()
    else:
        f.write("[")
    for n, row in enumerate(rows):
        if row["model"] is None:
            empty += 1
        else:
            findings += 1
        if writer is not None:
            writer.writerow(row)
        else:
            f.write(("," if n else "") + "\n" + json.dumps(row))
    if writer is None:
        f.write("\n]\n")
    return findings, empty
