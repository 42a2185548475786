"""A study folder: every received frame kept byte-identical exactly once, with its
findings and the link's ledger, safe against a crash at any moment.

    STUDY/study.db             SQLite (WAL): frames, findings, inference, ledger, runs
    STUDY/archive/NNNNNN.bin   append-only segments of self-describing frame records
    STUDY/lock                 held by the one process writing the study

A frame is durable when ``commit()`` returns: its record is written and fsync'ed to the
archive, then its row is committed (``synchronous=FULL``), then the folder is checked to
still be the one opened. Only then may the recorder be told it arrived.

Opening (edge/study/opening.py) never repairs by deleting what it does not understand:
an index that cannot account for the archive is an error, and ``capsule-edge study
rebuild`` recovers the index from the records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.study import archive, opening, schema, sealing
from edge.study.archive import Appender, Reader, Record
from edge.study.errors import CorruptFrameError, StorageError, StudyError
from edge.study.lock import StudyLock
from edge.study.opening import connect as connect  # the one way a study.db is opened

log = logging.getLogger(__name__)

MAX_COMMIT_FRAMES = opening.MAX_COMMIT_FRAMES


@dataclass(frozen=True)
class StoredFrame:
    session: int
    index: int
    codec: int
    timestamp_us: int
    data: bytes
    width: int = 0
    height: int = 0
    origin: str | None = None


@dataclass(frozen=True)
class FrameRef:
    """Where a stored frame is: what a backlog holds instead of the bytes."""

    session: int
    index: int
    segment: int
    offset: int
    length: int
    codec: int
    width: int
    height: int
    crc: int | None


@dataclass(frozen=True)
class Finding:
    model: str  # its role: "classifier", "detector" or a further "detector.<name>"
    label: str
    score: float
    box: tuple[float, float, float, float] | None = None  # frame pixels, detector only
    scores: tuple[tuple[str, float], ...] | None = None  # classifier: every class's score


def read_frame(reader: Reader, ref: FrameRef) -> bytes:
    """A stored frame's bytes as received, checked against the CRC taken when it was
    stored (and, in a sealed study, opened with its key)."""
    data = reader.read(ref.segment, ref.offset, ref.length)
    if ref.crc is not None and archive.crc(data) != ref.crc:
        raise CorruptFrameError(
            f"frame {ref.session}:{ref.index}: its bytes in archive/{ref.segment:06d}.bin "
            f"at {ref.offset} no longer match its CRC-32C"
        )
    return reader.opened(data, ref.session, ref.index)


PRIVATE_DIR = 0o700  # a new study's folders; its files are PRIVATE_FILE (edge.study.archive)


class Study:
    """The writing side of a study folder; one process at a time (``StudyLock``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.archive_dir = folder / "archive"
        self.db_path = folder / "study.db"
        try:  # owner-only: a study is patient data (its files are 0600, see below)
            folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
            self.archive_dir.mkdir(exist_ok=True, mode=PRIVATE_DIR)
        except OSError as exc:
            raise StudyError(f"{folder}: cannot create the study folder ({exc.strerror})") from None
        self._lock = StudyLock(folder)
        try:
            self.db = opening.open_database(folder)
            self._db_id = _identity(self.db_path)
            # Any record at all, committed or not, makes a study that holds frames: one
            # made without a key is never sealed halfway.
            held = archive.archive_bytes(self.archive_dir) > 0 or (
                self.db.execute("SELECT 1 FROM frames LIMIT 1").fetchone() is not None
            )
            sealed = sealing.sealer_for(folder)  # a sealed study without its key: refused now
            self.reader = Reader(self.archive_dir, None)  # stored bytes only, until sealed
            self.migrations = schema.migrate(self.db, self._crc_of)
            self._appender = Appender(
                self.archive_dir, opening.cut_uncommitted_tail(folder, self.db, self.reader)
            )
            # Only a study that opened soundly is marked sealed (a new one, with a key).
            if sealed is None:
                sealed = sealing.sealer_for_writing(folder, held)
            self.sealer = sealed
            sealing.keep_copies(folder, self.db)
            self.reader.use_sealer(self.sealer)
        except BaseException:
            self._lock.release()
            raise
        self._pending: list[tuple[object, ...]] = []
        self._pending_keys: set[tuple[int, int]] = set()
        self._pending_ledger: list[tuple[int, int, str, str | None]] = []
        self._outcomes: list[tuple[int, int, str, str | None, float | None]] = []
        self._findings: list[tuple[object, ...]] = []
        self._scores: list[tuple[object, ...]] = []

    # --- opening ---------------------------------------------------------------------

    def _crc_of(self, segment: int, offset: int, length: int) -> int:
        return archive.crc(self.reader.read(segment, offset, length))

    # --- frames ----------------------------------------------------------------------

    def _has_committed(self, session: int, index: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM frames WHERE session = ? AND idx = ?", (session, index)
        ).fetchone()
        return row is not None

    def has(self, session: int, index: int) -> bool:
        return (session, index) in self._pending_keys or self._has_committed(session, index)

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
        origin: str | None = None,
    ) -> FrameRef | None:
        """Queue a frame for the next ``commit``; None if the study already has it."""
        if self.has(session, index):
            return None
        stored = data if self.sealer is None else self.sealer.seal(data, session, index)
        crc, size = archive.crc(stored), len(stored)
        record = Record(session, index, timestamp_us, size, codec, width, height, crc, origin)
        segment, offset = self._appender.append(record, stored)
        row = (session, index, segment, offset, size, codec, timestamp_us, width, height)
        self._pending.append((*row, received_us, crc, origin))
        self._pending_keys.add((session, index))
        return FrameRef(session, index, segment, offset, size, codec, width, height, crc)

    def settle(self, session: int, index: int, outcome: str, reason: str | None) -> None:
        """Queue a ledger outcome for the next ``commit`` (the first one recorded stays)."""
        self._pending_ledger.append((session, index, outcome, reason))

    def add_inference(
        self,
        session: int,
        index: int,
        status: str,
        *,
        reason: str | None = None,
        inferred_ms: float | None = None,
        findings: tuple[Finding, ...] | list[Finding] = (),
    ) -> None:
        """Queue a frame's inference outcome and findings (replacing earlier ones)."""
        self._outcomes.append((session, index, status, reason, inferred_ms))
        for f in findings:
            x0, y0, x1, y1 = f.box if f.box is not None else (None, None, None, None)
            self._findings.append((session, index, f.model, f.label, f.score, x0, y0, x1, y1))
            if f.scores is not None:
                scores = json.dumps({label: round(p, 5) for label, p in f.scores})
                self._scores.append((session, index, f.model, scores))

    @property
    def frames_pending(self) -> int:
        return len(self._pending)

    def commit(self, *, durable: bool = True) -> list[tuple[int, int]]:
        """Make everything queued durable; returns the frames' (session, index).
        ``durable=False`` (findings only: they can be inferred again) skips the fsync."""
        if not (self._pending or self._pending_ledger or self._outcomes):
            return []
        if self._pending:
            self._appender.sync()
            durable = True
        db = self.db
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            with db:
                db.execute("BEGIN")
                db.executemany(
                    f"INSERT INTO frames ({schema.FRAME_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._pending,
                )
                db.executemany(
                    "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?)", self._pending_ledger
                )
                keys = [(s, i) for s, i, *_ in self._outcomes]
                db.executemany("DELETE FROM findings WHERE session = ? AND idx = ?", keys)
                db.executemany("DELETE FROM class_scores WHERE session = ? AND idx = ?", keys)
                db.executemany(
                    "INSERT OR REPLACE INTO inference VALUES (?, ?, ?, ?, ?)", self._outcomes
                )
                db.executemany(
                    "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._findings
                )
                db.executemany(
                    "INSERT OR REPLACE INTO class_scores VALUES (?, ?, ?, ?)", self._scores
                )
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")
        self.check_still_there()
        self._pending_ledger.clear()
        self._outcomes.clear()
        self._findings.clear()
        self._scores.clear()
        done = [(int(p[0]), int(p[1])) for p in self._pending]  # type: ignore[call-overload]
        self._pending.clear()
        self._pending_keys.clear()
        return done

    def check_still_there(self) -> None:
        """StorageError if the study folder was removed or replaced while open: what
        was just written went to files nobody can find."""
        if _identity(self.db_path) != self._db_id or not self._appender.same_file():
            raise StorageError(
                f"{self.folder}: the study folder was removed or replaced while the study ran"
            )

    def ref(self, session: int, index: int) -> FrameRef:
        row = self.db.execute(
            "SELECT segment, offset, length, codec, width, height, crc FROM frames "
            "WHERE session = ? AND idx = ?",
            (session, index),
        ).fetchone()
        if row is None:
            raise KeyError((session, index))
        return FrameRef(session, index, *row)

    def read(self, session: int, index: int) -> StoredFrame:
        row = self.db.execute(
            "SELECT segment, offset, length, codec, timestamp_us, width, height, crc, origin "
            "FROM frames WHERE session = ? AND idx = ?",
            (session, index),
        ).fetchone()
        if row is None:
            raise KeyError((session, index))
        segment, offset, length, codec, stamp, width, height, crc, origin = row
        ref = FrameRef(session, index, segment, offset, length, codec, width, height, crc)
        data = read_frame(self.reader, ref)
        return StoredFrame(session, index, codec, stamp, data, width, height, origin)

    def frames(self) -> Iterator[tuple[int, int]]:
        yield from self.db.execute("SELECT session, idx FROM frames ORDER BY session, idx")

    def origins(self, session: int) -> dict[str, tuple[int, int]]:
        """A folder session's frames: relative path -> (index, CRC) of its latest copy."""
        out: dict[str, tuple[int, int]] = {}
        for origin, index, crc in self.db.execute(
            "SELECT origin, idx, crc FROM frames WHERE session = ? AND origin IS NOT NULL "
            "ORDER BY idx",
            (session,),
        ):
            if self.sealer is not None:  # the CRC kept is the sealed bytes'
                try:
                    crc = archive.crc(self.read(session, int(index)).data)
                except (CorruptFrameError, OSError):
                    continue  # a damaged copy is not held: the file is stored again
            out[origin] = (int(index), int(crc))
        return out

    def next_index(self, session: int) -> int:
        """The first index after every frame the study holds of ``session``."""
        (last,) = self.db.execute(
            "SELECT MAX(idx) FROM frames WHERE session = ?", (session,)
        ).fetchone()
        return 0 if last is None else int(last) + 1

    def sessions(self) -> list[int]:
        return [int(s) for (s,) in self.db.execute("SELECT DISTINCT session FROM frames")]

    def uninferred_count(self) -> int:
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM frames f LEFT JOIN inference i "
                "ON i.session = f.session AND i.idx = f.idx WHERE i.status IS NULL"
            ).fetchone()[0]
        )

    # --- runs ------------------------------------------------------------------------

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

    # --- closing ---------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._release()

    def abandon(self) -> None:
        """Close without committing (after a storage error): what was queued was never
        acknowledged, and the next open cuts its bytes off."""
        self._pending.clear()
        self._pending_keys.clear()
        self._release()

    def _release(self) -> None:
        # After a storage error a buffer may not be writable: exactly what is given up.
        with contextlib.suppress(OSError):
            self._appender.close()
        self.reader.close()
        self.db.close()
        self._lock.release()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abandon()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
