"""A study folder: every received frame kept byte-identical exactly once, with its
findings and the link's ledger, safe against a crash at any moment.

    STUDY/study.db             SQLite (WAL): frames, findings, ledger
    STUDY/archive/NNNNNN.bin   append-only segments of frame records

A frame is durable when ``commit()`` returns: its bytes are written and fsync'ed to the
archive, then its row is committed (``synchronous=FULL``). Only then may the recorder
be told it arrived. A crash can leave archive bytes after the last committed record;
opening the study again cuts them off, so every frame is in the archive exactly once
and only frames the database knows. Commits are grouped: one fsync for many frames.
"""

from __future__ import annotations

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
CREATE TABLE IF NOT EXISTS ledger (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (session, idx)
);
"""


@dataclass(frozen=True)
class StoredFrame:
    session: int
    index: int
    codec: int
    timestamp_us: int
    data: bytes


class Study:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.archive = folder / "archive"
        try:
            self.archive.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{folder}: cannot create the study folder ({exc})") from None
        self.db = sqlite3.connect(folder / "study.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._pending: list[tuple[int, int, int, int, int, int, int]] = []
        self._pending_keys: set[tuple[int, int]] = set()
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

    def add(self, session: int, index: int, data: bytes, codec: int, timestamp_us: int) -> bool:
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
            (session, index, self._segment, offset, len(data), codec, timestamp_us)
        )
        self._pending_keys.add((session, index))
        return True

    def _flush_file(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def commit(self) -> list[tuple[int, int]]:
        """Make every queued frame durable; returns their (session, index)."""
        if not self._pending:
            return []
        self._flush_file()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending)
        done = [(p[0], p[1]) for p in self._pending]
        self._pending.clear()
        self._pending_keys.clear()
        return done

    def read(self, session: int, index: int) -> StoredFrame:
        row = self.db.execute(
            "SELECT segment, offset, length, codec, timestamp_us FROM frames "
            "WHERE session = ? AND idx = ?",
            (session, index),
        ).fetchone()
        if row is None:
            raise KeyError((session, index))
        segment, offset, length, codec, stamp = row
        with open(self._segment_path(segment), "rb") as f:
            f.seek(offset)
            return StoredFrame(session, index, codec, stamp, f.read(length))

    def frames(self) -> Iterator[tuple[int, int]]:
        yield from self.db.execute("SELECT session, idx FROM frames ORDER BY session, idx")

    def close(self) -> None:
        self.commit()
        self._file.close()
        self.db.close()
