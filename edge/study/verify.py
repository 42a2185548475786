"""``study verify``: check a study without changing it.

One pass over the archive (``archive.scan``, segment by segment) merged with one pass
over the database's frames in archive order: every row must sit on a sound record
header naming its frame, with bytes matching its CRC-32C, and every record must be
indexed exactly once. The ledger, inference and findings are then checked against the
frames with anti-joins on their primary keys. Nothing is held in memory per frame, so a
12-hour study (a million frames) streams through.

A study a runtime is writing is read through a read-only connection, without its lock:
records after the database's last frame are in flight then, not problems. Without a
runtime they are what a stop (a kill, a full disk) left before its commit: never
acknowledged, and cut by the next run. They are a note when they are exactly what that
run cuts (whole records of frames the database does not have, no more than one commit
holds, and at most a torn write at a segment's end), and problems otherwise.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from edge.study import archive, database
from edge.study.archive import Damage, Reader, Scanned
from edge.study.errors import StudyError
from edge.study.problems import Problem, Report
from edge.study.readonly import StudyView, lock_holder, open_study
from edge.study.store import MAX_COMMIT_FRAMES

DELIVERED = ("delivered", "delivered_after_retransmit")
AFTER_LAST = (
    "after the database's last frame: left by a stop before its commit (never "
    "acknowledged); the next run on this folder cuts it"
)


class Row(NamedTuple):
    segment: int
    offset: int
    length: int
    session: int
    idx: int
    crc: int | None
    origin: str | None

    @property
    def name(self) -> str:
        return f"frame {self.session}:{self.idx}"

    @property
    def where(self) -> str:
        return f"archive/{self.segment:06d}.bin offset {self.offset}"

    def header_start(self) -> int:
        return self.offset - archive.HEADER.size - len(archive._encoded(self.origin))


def verify(folder: Path) -> Report:
    """Check the study at ``folder``; a ``StudyError`` if it cannot be read at all."""
    started = time.perf_counter()
    with open_study(folder) as view:
        report = Report(folder, in_use=lock_holder(folder))
        view.db.execute("BEGIN")  # one snapshot for every query below
        try:
            _Merge(view, report).run()
            _check_tables(view.db, report)
        except database.DatabaseError as exc:
            raise StudyError(f"{folder / 'study.db'}: damaged ({exc})") from None
        finally:
            view.db.rollback()
    report.seconds = time.perf_counter() - started
    return report


class _Merge:
    """The archive's records and the frames table, both in archive order, side by side."""

    def __init__(self, view: StudyView, report: Report) -> None:
        self.view = view
        self.db = view.db
        self.report = report
        self.reader = Reader(view.archive_dir)
        self.pending: list[Damage] = []  # damaged stretches not yet explained by a row
        self.explained: set[tuple[int, int]] = set()
        self.legacy: list[Damage] = []
        self.in_flight = 0
        self.sessions: set[int] = set()
        # After the database's last frame, with no runtime: what the next run cuts.
        self.tail: list[Problem] = []
        self.tail_records = 0
        self.tail_cut = True  # False: the next open refuses it rather than cut it
        self.sizes: dict[int, int] = {}
        last = self.db.execute(
            "SELECT segment, offset FROM frames ORDER BY segment DESC, offset DESC LIMIT 1"
        ).fetchone()
        self.last: tuple[int, int] = tuple(last) if last else (0, -1)

    def rows(self) -> Iterator[Row]:
        cols = self.view.columns("frames")
        crc = "crc" if "crc" in cols else "NULL"
        origin = "origin" if "origin" in cols else "NULL"
        for r in self.db.execute(
            f"SELECT segment, offset, length, session, idx, {crc}, {origin} FROM frames "
            "ORDER BY segment, offset"
        ):
            yield Row(*r)

    def items(self) -> Iterator[Scanned | Damage]:
        found = archive.segments(self.view.archive_dir)
        self.report.segments = len(found)
        for number, path in found:
            self.sizes[number] = path.stat().st_size
            self.report.archive_bytes += self.sizes[number]
            yield from archive.scan(self.view.archive_dir, number)

    def run(self) -> None:
        rows = self.rows()
        row = next(rows, None)
        try:
            for item in self.items():
                key = (item.segment, item.offset)
                while row is not None and (row.segment, row.offset) < key:
                    self.alone(row)
                    row = next(rows, None)
                if isinstance(item, Damage):
                    self.damaged(item)
                    continue
                self.flush_damage()
                if row is not None and (row.segment, row.offset) == key:
                    self.compare(row, item)
                    row = next(rows, None)
                else:
                    self.unindexed(item)
            while row is not None:
                self.alone(row)
                row = next(rows, None)
            self.flush_damage()
            self.finish()
        finally:
            self.reader.close()

    def count(self, row: Row) -> None:
        self.report.frames += 1
        self.sessions.add(row.session)

    def compare(self, row: Row, item: Scanned) -> None:
        self.count(row)
        rec = item.record
        if (rec.session, rec.index) != (row.session, row.idx) or rec.length != row.length:
            self.problem("header", row, f"the record there is frame {rec.session}:{rec.index}")
        elif rec.origin != row.origin:
            self.problem("header", row, f"its record names {rec.origin!r}, not {row.origin!r}")
        elif not item.data_ok or (row.crc is not None and rec.crc != row.crc):
            self.problem("crc", row, "its bytes do not match its CRC-32C")

    def alone(self, row: Row) -> None:
        """A row on no sound record: a damaged header, a schema-0 record, or nothing."""
        self.count(row)
        start = row.header_start()
        for d in self.pending + self.legacy:
            if d.segment == row.segment and d.offset <= start < d.offset + d.length:
                self.explained.add((d.segment, d.offset))
        try:
            data = self.reader.read(row.segment, row.offset, row.length)
        except OSError as exc:
            self.problem("header", row, f"its bytes cannot be read ({exc})")
            return
        sound = row.crc is None or archive.crc(data) == row.crc
        if self.is_legacy(row):
            if not sound:
                self.problem("crc", row, "its bytes do not match its CRC-32C")
            return
        bytes_say = "its bytes match its CRC-32C" if sound else "nor do its bytes match its CRC"
        self.problem("header", row, f"no sound record header before its bytes ({bytes_say})")

    def is_legacy(self, row: Row) -> bool:
        size = archive.LEGACY_HEADER.size
        if not any(d.segment == row.segment and d.offset <= row.offset for d in self.legacy):
            return False
        try:
            raw = self.reader.read(row.segment, row.offset - size, size)
        except OSError:
            return False
        magic, s, i, _, n = archive.LEGACY_HEADER.unpack(raw)
        return (magic, s, i, n) == (archive.LEGACY_MAGIC, row.session, row.idx, row.length)

    def unindexed(self, item: Scanned) -> None:
        rec = item.record
        after = (item.segment, item.offset) > self.last
        if after and self.report.in_use is not None:
            self.in_flight += 1  # written since this snapshot, or about to be committed
            return
        known = self.db.execute(
            "SELECT segment, offset FROM frames WHERE session = ? AND idx = ?",
            (rec.session, rec.index),
        ).fetchone()
        where = f"archive/{item.segment:06d}.bin offset {item.offset}"
        if known is not None:
            kind = "duplicate"
            what = (
                f"a second record at {where} (the database's is in "
                f"archive/{known[0]:06d}.bin at offset {known[1]})"
            )
        else:
            kind, what = "unindexed", f"its record at {where} is not in the database"
        problem = Problem(
            kind,
            f"frame {rec.session}:{rec.index}: {what}" + (f"; {AFTER_LAST}" if after else ""),
            rec.session,
            rec.index,
            item.segment,
            item.offset,
        )
        if after:
            self.tail.append(problem)
            self.tail_records += 1
            self.tail_cut &= kind == "unindexed"
        else:
            self.report.add(problem)

    def damaged(self, d: Damage) -> None:
        if d.what.startswith("records of schema 0"):
            self.legacy.append(d)
            self.report.notes.append(
                f"archive/{d.segment:06d}.bin: {d.length:,} bytes from offset {d.offset} "
                "are records of schema 0, checked through the database's index only"
            )
        else:
            self.pending.append(d)

    def flush_damage(self) -> None:
        for d in self.pending:
            if (d.segment, d.offset) in self.explained:
                continue  # a frame's damaged header, named by its frame
            what = f"hold no frame the database knows ({d.what})"
            after = (d.segment, d.offset) > self.last
            if after and self.report.in_use is not None:
                self.in_flight += 1  # a record being written as the archive was read
                continue
            problem = Problem(
                "damage",
                f"archive/{d.segment:06d}.bin: {d.length:,} bytes at offset {d.offset} {what}"
                + (f"; {AFTER_LAST}" if after else ""),
                segment=d.segment,
                offset=d.offset,
            )
            if after:
                self.tail.append(problem)
                self.tail_cut &= d.offset + d.length == self.sizes[d.segment]  # a torn write
            else:
                self.report.add(problem)
        self.pending = []

    def finish(self) -> None:
        self.report.sessions = len(self.sessions)
        if self.tail and self.tail_cut and self.tail_records <= MAX_COMMIT_FRAMES:
            torn = len(self.tail) - self.tail_records
            self.report.notes.append(
                f"{self.tail_records} record(s){' and a torn write' if torn else ''} {AFTER_LAST}"
            )
        else:
            for problem in self.tail:
                self.report.add(problem)
        if self.report.in_use is not None:
            self.report.notes.append(
                f"read while {self.report.in_use} writes it: what it had committed then"
            )
        if self.in_flight:
            self.report.notes.append(
                f"{self.in_flight} record(s) after the database's last frame: being written "
                f"by {self.report.in_use}"
            )

    def problem(self, kind: str, row: Row, what: str) -> None:
        self.report.add(
            Problem(
                kind,
                f"{row.name}: {what} ({row.where}, {row.length} bytes)",
                row.session,
                row.idx,
                row.segment,
                row.offset,
            )
        )


def _check_tables(db: sqlite3.Connection, report: Report) -> None:
    """The ledger, inference and findings against the frames (anti-joins on keys)."""
    delivered = ", ".join(f"'{d}'" for d in DELIVERED)
    in_frames = "SELECT 1 FROM frames f WHERE f.session = t.session AND f.idx = t.idx"
    checks = [
        (
            "ledger",
            f"SELECT session, idx, outcome FROM ledger t WHERE outcome IN ({delivered}) "
            f"AND NOT EXISTS ({in_frames})",
            "the ledger says {2}, but no frame is stored",
        ),
        (
            "ledger",
            "SELECT session, idx, outcome FROM ledger t WHERE outcome NOT IN "
            f"({delivered}) AND EXISTS ({in_frames})",
            "stored, but the ledger says {2}",
        ),
        (
            "inference",
            f"SELECT session, idx, status FROM inference t WHERE NOT EXISTS ({in_frames})",
            "an inference row ({2}) for a frame that is not stored",
        ),
        (
            "inference",
            "SELECT session, idx, status FROM inference WHERE status NOT IN ('done', 'failed')",
            "an inference status {2!r} (done or failed expected)",
        ),
        (
            "findings",
            "SELECT t.session, t.idx, COUNT(*), i.status FROM findings t LEFT JOIN inference i "
            "ON i.session = t.session AND i.idx = t.idx WHERE i.status IS NOT 'done' "
            "GROUP BY t.session, t.idx",
            "{2} finding(s), but its inference outcome is {3}",
        ),
    ]
    for kind, sql, text in checks:
        for r in db.execute(sql):
            r = tuple("none" if v is None else v for v in r)
            report.add(Problem(kind, f"frame {r[0]}:{r[1]}: " + text.format(*r), r[0], r[1]))
    unsettled = db.execute(
        "SELECT session, idx FROM frames t WHERE NOT EXISTS (SELECT 1 FROM ledger l "
        "WHERE l.session = t.session AND l.idx = t.idx)"
    )
    if report.in_use is not None:
        n = sum(1 for _ in unsettled)
        if n:
            report.notes.append(f"{n} stored frame(s) not yet in the ledger (being written)")
    else:
        for s, i in unsettled:
            report.add(Problem("ledger", f"frame {s}:{i}: stored, but not in the ledger", s, i))
    report.ledger_rows = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    report.inferred = db.execute("SELECT COUNT(*) FROM inference WHERE status = 'done'").fetchone()[
        0
    ]
    report.findings = db.execute("SELECT COUNT(*) FROM findings").fetchone()[0]
