"""Opening a study folder without ever repairing by deleting what is not understood.

A missing, empty or damaged study.db beside an archive that holds frames is an error
(``capsule-edge study rebuild`` recovers the index from the records). Records a crash
left after the last committed one are cut only when the database proves them
uncommitted: it is sound, its last frame is where it says in the archive, and every
record after it is a whole record of a frame the database does not have, no more than
one commit holds.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from edge.study import archive, database, schema, sealing
from edge.study.archive import PRIVATE_FILE, Reader, Scanned
from edge.study.errors import StudyError

log = logging.getLogger(__name__)

MAX_COMMIT_FRAMES = 512  # one commit holds at most this many frames


def connect(path: Path, *, readonly: bool = False, encrypt: bool = False) -> sqlite3.Connection:
    """``encrypt``: a new database is made encrypted (the process's key)."""
    if readonly:
        db = database.connect(path, uri=f"file:{path}?mode=ro", check_same_thread=False)
    else:
        db = database.connect(path, encrypt=encrypt, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


def open_database(folder: Path) -> sqlite3.Connection:
    """study.db, created or checked: never one that cannot account for archive/."""
    archive_dir, db_path = folder / "archive", folder / "study.db"
    held = archive.archive_bytes(archive_dir)
    rebuild = f"nothing was changed; `capsule-edge study rebuild {folder}` recovers it"
    if held and (not db_path.exists() or db_path.stat().st_size == 0):
        raise StudyError(
            f"{db_path}: missing or empty, but archive/ holds {held:,} bytes of frames: {rebuild}"
        )
    if not db_path.exists():  # owner-only; SQLite gives its -wal and -shm the same mode
        if sealing.has_key():
            sealing.refuse_key_inside(folder)
        elif (folder / sealing.MARKER).exists():  # never a plain database for a sealed study
            raise sealing.StudyKeyError(f"{folder}: its frames are encrypted; {sealing.GIVE_KEY}")
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    try:  # a new study with a key: its database encrypted from its first page
        db = connect(db_path, encrypt=sealing.has_key())
        ok = db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise StudyError(f"{db_path}: damaged ({ok}); {rebuild}")
        found = schema.tables(db)
        if not found:
            if held:
                raise StudyError(
                    f"{db_path}: holds no tables, but archive/ holds {held:,} bytes "
                    f"of frames: {rebuild}"
                )
            schema.create(db)
        elif "frames" not in found:
            raise StudyError(f"{db_path}: not a study database (no frames table)")
        elif schema.version(db) > schema.VERSION:
            raise StudyError(
                f"{db_path}: written by a newer capsule-edge (schema "
                f"{schema.version(db)}, this one knows {schema.VERSION})"
            )
    except database.DatabaseError as exc:
        raise StudyError(f"{db_path}: damaged ({exc}); {rebuild}") from None
    return db


def cut_uncommitted_tail(folder: Path, db: sqlite3.Connection, reader: Reader) -> int:
    """Cut what a crash left after the last committed record, when the database proves
    it uncommitted (see edge/study/store.py); the segment to append to."""
    archive_dir = folder / "archive"
    row = db.execute(
        "SELECT session, idx, segment, offset, length, origin FROM frames "
        "ORDER BY segment DESC, offset DESC LIMIT 1"
    ).fetchone()
    segment, end = 1, 0
    if row is not None:
        session, index, segment, offset, length, origin = row
        end = offset + length
        if not record_is_at(reader, segment, offset, session, index, length, origin):
            raise StudyError(
                f"{folder}: the database's last frame {session}:{index} is not where "
                f"it says in archive/{segment:06d}.bin; nothing was changed (see "
                f"`capsule-edge study verify {folder}`)"
            )
    tail = [(n, p) for n, p in archive.segments(archive_dir) if n >= segment]
    cut: list[Scanned] = []
    for number, path in tail:
        size = path.stat().st_size
        for item in archive.scan(archive_dir, number, end if number == segment else 0):
            if isinstance(item, Scanned):
                cut.append(item)
            elif item.offset + item.length < size:
                raise StudyError(
                    f"{path}: {item.what} at byte {item.offset}, after the last committed "
                    f"frame; nothing was changed"
                )
            # else: a record torn by the crash, the segment's last bytes
    keys = [(s.record.session, s.record.index) for s in cut]
    known = [k for k in keys if _has_frame(db, *k)]
    if known or len(cut) > MAX_COMMIT_FRAMES:
        raise StudyError(
            f"{folder}: archive/ holds {len(cut)} records after the database's last "
            f"frame{f', {len(known)} of frames it has' if known else ''}: the database "
            f"is older than the archive; nothing was changed; `capsule-edge study "
            f"rebuild {folder}` recovers the index"
        )
    for number, path in tail:
        size = path.stat().st_size
        if number > segment:
            path.unlink()
        elif size > end:
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        else:
            continue
        log.warning(
            "%s: cut %d bytes never committed (%d frame records, never acknowledged)",
            path,
            size - (end if number == segment else 0),
            sum(1 for s in cut if s.segment == number),
        )
    return segment


def _has_frame(db: sqlite3.Connection, session: int, index: int) -> bool:
    row = db.execute(
        "SELECT 1 FROM frames WHERE session = ? AND idx = ?", (session, index)
    ).fetchone()
    return row is not None


def record_is_at(
    reader: Reader,
    segment: int,
    offset: int,
    session: int,
    index: int,
    length: int,
    origin: str | None,
) -> bool:
    """Whether the record header before ``offset`` names this frame (a schema-0 header,
    which has no CRC of its own, by its session, index and length)."""
    try:
        header = reader.header_at(segment, offset, origin)
        if header is not None:
            return (header.session, header.index, header.length) == (session, index, length)
        if offset < archive.LEGACY_HEADER.size:
            return False
        raw = reader.read(segment, offset - archive.LEGACY_HEADER.size, archive.LEGACY_HEADER.size)
    except OSError:
        return False
    magic, s, i, _, n = archive.LEGACY_HEADER.unpack(raw)
    return (magic, s, i, n) == (archive.LEGACY_MAGIC, session, index, length)
