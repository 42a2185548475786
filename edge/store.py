"""A study folder: every received frame kept byte-identical exactly once, with its
findings and the link's ledger, safe against a crash at any moment.

    STUDY/study.db             SQLite (WAL): frames, findings, inference, ledger, runs
    STUDY/archive/NNNNNN.bin   append-only segments of frame records

A frame is durable when ``commit()`` returns: its bytes are written and fsync'ed to the
archive, then its row is committed (``synchronous=FULL``). Only then may the recorder
be told it arrived. A crash can leave archive bytes after the last committed record;
opening the study again cuts them off, so every frame is in the archive exactly once
and only frames the database knows. Commits are grouped: one fsync for many frames.

Two writers share the database: ``Study`` (the receiving thread: frames, ledger, link
statistics) and ``FindingsWriter`` (the inference thread: findings and the inference
row of each frame, one transaction per group of frames). A frame inferred twice (a
restart between inference and its commit) replaces its earlier findings.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edge.errors import BadInputError

SEGMENT_BYTES = 256 << 20  # a new archive segment after this many bytes
RECORD = struct.Struct("<4sIIQI")  # magic, session, index, timestamp_us, length
MAGIC = b"CEF1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    timestamp_us INTEGER NOT NULL,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    received_us INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS findings (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    x0 REAL, y0 REAL, x1 REAL, y1 REAL
);
CREATE INDEX IF NOT EXISTS findings_frame ON findings (session, idx);
CREATE TABLE IF NOT EXISTS inference (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,          -- done | skipped | failed
    reason TEXT,
    inferred_ms REAL,              -- fully received -> findings ready
    PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS ledger (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS link_stats (
    time_us INTEGER NOT NULL,
    stats TEXT NOT NULL            -- JSON: the link's counters at that moment
);
CREATE TABLE IF NOT EXISTS runs (
    started_us INTEGER NOT NULL,
    stopped_us INTEGER,
    source TEXT NOT NULL,
    settings TEXT NOT NULL,        -- JSON: the effective configuration and models used
    summary TEXT                   -- JSON, written at a clean stop
);
"""

BUSY_TIMEOUT_MS = 10_000  # the two writers wait for each other this long at most


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


@dataclass(frozen=True)
class StoredFrame:
    session: int
    index: int
    codec: int
    timestamp_us: int
    data: bytes
    width: int = 0
    height: int = 0


Row = tuple[int, int, int, int, int, int, int, int, int, int]


class Study:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.archive = folder / "archive"
        try:
            self.archive.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{folder}: cannot create the study folder ({exc})") from None
        try:
            self.db = connect(folder / "study.db")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BadInputError(
                f"{folder / 'study.db'}: not a usable study database ({exc})"
            ) from None
        self._pending: list[Row] = []
        self._pending_keys: set[tuple[int, int]] = set()
        self._pending_ledger: list[tuple[int, int, str, str | None]] = []
        self._pending_skips: list[tuple[int, int, str, str | None, None]] = []
        self._segment, self._file = self._recover()

    def _recover(self) -> tuple[int, BinaryIO]:
        """Cut archive bytes that no committed frame row points at (a crash between the
        archive write and the database commit), and open the last segment to append."""
        row = self.db.execute(
            "SELECT segment, offset + length FROM frames ORDER BY segment DESC, offset DESC LIMIT 1"
        ).fetchone()
        segment, end = (int(row[0]), int(row[1])) if row else (1, 0)
        for path in sorted(self.archive.glob("*.bin")):
            number = int(path.stem)
            if number > segment:
                path.unlink()  # a segment started but never committed into
        path = self._segment_path(segment)
        with open(path, "ab") as f:
            if f.tell() > end:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        return segment, open(path, "ab")

    def _segment_path(self, segment: int) -> Path:
        return self.archive / f"{segment:06d}.bin"

    def has(self, session: int, index: int) -> bool:
        if (session, index) in self._pending_keys:
            return True
        row = self.db.execute(
            "SELECT 1 FROM frames WHERE session = ? AND idx = ?", (session, index)
        ).fetchone()
        return row is not None

    def add(
        self,
        session: int,
        index: int,
        data: bytes,
        codec: int,
        timestamp_us: int,
        *,
        width: int = 0,
        height: int = 0,
        received_us: int = 0,
    ) -> bool:
        """Queue a frame for the next ``commit``; False if the study already has it."""
        if self.has(session, index):
            return False
        f = self._file
        if f.tell() >= SEGMENT_BYTES:
            self._flush_file()
            f.close()
            self._segment += 1
            f = self._file = open(self._segment_path(self._segment), "ab")  # noqa: SIM115
        offset = f.tell() + RECORD.size
        f.write(RECORD.pack(MAGIC, session, index, timestamp_us, len(data)))
        f.write(data)
        self._pending.append(
            (
                session,
                index,
                self._segment,
                offset,
                len(data),
                codec,
                timestamp_us,
                width,
                height,
                received_us,
            )
        )
        self._pending_keys.add((session, index))
        return True

    def _flush_file(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def settle(self, session: int, index: int, outcome: str, reason: str | None) -> None:
        """Queue a ledger outcome for the next ``commit`` (the first one recorded stays)."""
        self._pending_ledger.append((session, index, outcome, reason))

    def skip(self, session: int, index: int, reason: str) -> None:
        """Queue a frame's inference outcome "skipped" for the next ``commit``."""
        self._pending_skips.append((session, index, "skipped", reason, None))

    def commit(self) -> list[tuple[int, int]]:
        """Make every queued frame, ledger outcome and skip durable; returns the frames'
        (session, index)."""
        if not self._pending and not self._pending_ledger and not self._pending_skips:
            return []
        if self._pending:
            self._flush_file()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?)", self._pending_ledger
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO inference VALUES (?, ?, ?, ?, ?)", self._pending_skips
            )
        self._pending_ledger.clear()
        self._pending_skips.clear()
        done = [(p[0], p[1]) for p in self._pending]
        self._pending.clear()
        self._pending_keys.clear()
        return done

    def read(self, session: int, index: int) -> StoredFrame:
        row = self.db.execute(
            "SELECT segment, offset, length, codec, timestamp_us, width, height FROM frames "
            "WHERE session = ? AND idx = ?",
            (session, index),
        ).fetchone()
        if row is None:
            raise KeyError((session, index))
        segment, offset, length, codec, stamp, width, height = row
        with open(self._segment_path(segment), "rb") as f:
            f.seek(offset)
            return StoredFrame(session, index, codec, stamp, f.read(length), width, height)

    def frames(self) -> Iterator[tuple[int, int]]:
        yield from self.db.execute("SELECT session, idx FROM frames ORDER BY session, idx")

    def uninferred(self) -> list[tuple[int, int]]:
        """Stored frames without an inference outcome (a run stopped before them)."""
        return [
            (int(s), int(i))
            for s, i in self.db.execute(
                "SELECT f.session, f.idx FROM frames f LEFT JOIN inference i "
                "ON i.session = f.session AND i.idx = f.idx WHERE i.status IS NULL "
                "ORDER BY f.session, f.idx"
            )
        ]

    def record_link_stats(self, time_us: int, stats_json: str) -> None:
        self.db.execute("INSERT INTO link_stats VALUES (?, ?)", (time_us, stats_json))

    def start_run(self, started_us: int, source: str, settings_json: str) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (started_us, source, settings) VALUES (?, ?, ?)",
            (started_us, source, settings_json),
        )
        return int(cur.lastrowid or 0)

    def stop_run(self, run: int, stopped_us: int, summary_json: str) -> None:
        self.db.execute(
            "UPDATE runs SET stopped_us = ?, summary = ? WHERE rowid = ?",
            (stopped_us, summary_json, run),
        )

    def close(self) -> None:
        self.commit()
        self._file.close()
        self.db.close()

    def abandon(self) -> None:
        """Close without committing (after a storage error): what was queued was never
        acknowledged, and the next open cuts its bytes off."""
        self._pending.clear()
        self._pending_keys.clear()
        # Its buffer may not be writable: exactly what is being given up.
        with contextlib.suppress(OSError):
            self._file.close()
        self.db.close()


@dataclass(frozen=True)
class Finding:
    model: str  # "classifier" or "detector"
    label: str
    score: float
    box: tuple[float, float, float, float] | None = None  # frame pixels, detector only


class FindingsWriter:
    """The inference thread's own connection: each frame's findings and outcome."""

    def __init__(self, folder: Path) -> None:
        self.db = connect(folder / "study.db")
        self._outcomes: list[tuple[int, int, str, str | None, float | None]] = []
        self._findings: list[
            tuple[int, int, str, str, float, float | None, float | None, float | None, float | None]
        ] = []

    def add(
        self,
        session: int,
        index: int,
        status: str,
        *,
        reason: str | None = None,
        inferred_ms: float | None = None,
        findings: tuple[Finding, ...] | list[Finding] = (),
    ) -> None:
        self._outcomes.append((session, index, status, reason, inferred_ms))
        for f in findings:
            x0, y0, x1, y1 = f.box if f.box is not None else (None, None, None, None)
            self._findings.append((session, index, f.model, f.label, f.score, x0, y0, x1, y1))

    @property
    def pending(self) -> int:
        return len(self._outcomes)

    def commit(self) -> int:
        """Store what was added (one transaction); returns the number of frames."""
        if not self._outcomes:
            return 0
        keys = [(s, i) for s, i, *_ in self._outcomes]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM findings WHERE session = ? AND idx = ?", keys)
            self.db.executemany(
                "INSERT OR REPLACE INTO inference VALUES (?, ?, ?, ?, ?)", self._outcomes
            )
            self.db.executemany(
                "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._findings
            )
        count = len(self._outcomes)
        self._outcomes.clear()
        self._findings.clear()
        return count

    def close(self) -> None:
        self.commit()
        self.db.close()
