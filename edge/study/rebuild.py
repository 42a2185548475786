"""``study rebuild``: a study's index recovered from its self-describing archive records.

The new database is built beside the old one (``study.db.rebuilding``) and moved into
place only when complete; the old one (with its ``-wal``) is kept as
``study.db.damaged-<time>``, never deleted. What only the database held comes back from
the old one when it is sound (a database older than its archive): runs, ledger,
inference and findings of the frames found. From a damaged or missing one nothing comes
back: the frames are inferred again on the next run (no inference row: not inferred),
and the ledger marks every frame found delivered (it is in the archive, so it arrived).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.study import archive, database, schema, sealing, store
from edge.study.archive import Damage, Scanned
from edge.study.durable import sync_dir
from edge.study.errors import StudyError
from edge.study.lock import StudyLock
from edge.study.readonly import connect_readonly

log = logging.getLogger(__name__)

SALVAGED = (  # table, columns, a condition on the rebuilt frames (? = session, idx)
    ("runs", "started_us, stopped_us, source, settings, summary", None),
    ("link_stats", "time_us, stats", None),
    ("sealing", "doc", None),
    ("ledger", "session, idx, outcome, reason", None),
    (
        "inference",
        "session, idx, status, reason, inferred_ms",
        "SELECT 1 FROM frames WHERE session = ? AND idx = ?",
    ),
    (
        "findings",
        "session, idx, model, label, score, x0, y0, x1, y1",
        "SELECT 1 FROM inference WHERE session = ? AND idx = ? AND status = 'done'",
    ),
    (
        "class_scores",
        "session, idx, model, scores",
        "SELECT 1 FROM inference WHERE session = ? AND idx = ? AND status = 'done'",
    ),
)
OPTIONAL = {"class_scores", "sealing"}  # not in a database of schema 1, 2


@dataclass
class Rebuilt:
    frames: int = 0
    sessions: int = 0
    segments: int = 0
    kept_as: str | None = None
    salvaged: dict[str, int] = field(default_factory=dict)
    salvage_note: str = ""
    problems: list[str] = field(default_factory=list)  # damage, bad CRCs, duplicates
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self, folder: Path) -> list[str]:
        out = [
            f"rebuilt {folder / 'study.db'} from {self.segments} archive segment(s): "
            f"{self.frames} frames in {self.sessions} session(s) in {self.seconds:.1f} s",
            f"the old database is kept as {self.kept_as}"
            if self.kept_as
            else "there was no study.db to keep",
        ]
        if self.salvaged:
            got = ", ".join(f"{n} {table}" for table, n in self.salvaged.items())
            out.append(f"from the old database (sound): {got}")
        else:
            out.append(
                f"{self.salvage_note}: inference, findings, ledger outcomes and runs are not "
                "in the archive and are gone; the next `capsule-edge run` on this folder "
                f"infers all {self.frames} frames again; the ledger marks every frame found "
                "delivered (frames lost or dropped by the link are recorded nowhere else)"
            )
        out += self.problems + [f"note: {n}" for n in self.notes]
        return out


def rebuild(folder: Path, *, plain: bool = False) -> Rebuilt:
    """``plain``: the study was made without a key, whatever its old database looks like."""
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such folder")
    if not (folder / "archive").is_dir():
        raise StudyError(f"{folder}: not a study folder (no archive/ to rebuild from)")
    lock = StudyLock(folder)
    try:
        return _rebuild(folder, plain)
    finally:
        lock.release()


def _files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def _rebuild(folder: Path, plain: bool) -> Rebuilt:
    started = time.perf_counter()
    done = Rebuilt()
    old, new = folder / "study.db", folder / "study.db.rebuilding"
    for path in _files(new):  # an earlier rebuild, interrupted: ours to redo
        path.unlink(missing_ok=True)
    encrypt = _encrypts(folder, old, plain)
    if plain and database.is_encrypted(old):
        done.notes.append(
            "the old database is not plain SQLite: rebuilt as a study made without a key "
            "(--plain); had it one, the old database (kept) and the key rebuild it again"
        )
    db = store.connect(new, encrypt=encrypt)
    try:
        schema.create(db)
        with db:
            db.execute("BEGIN")
            _index(folder, db, done)
            _salvage(old, db, done)
            db.execute(
                "INSERT OR IGNORE INTO ledger SELECT session, idx, 'delivered', NULL FROM frames"
            )
        done.sessions = db.execute("SELECT COUNT(DISTINCT session) FROM frames").fetchone()[0]
    except database.Error as exc:
        db.close()
        raise StudyError(f"{new}: cannot build the new database ({exc})") from None
    db.close()  # the last connection: its WAL is checkpointed into the file and removed
    if old.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S")
        kept = old.with_name(f"study.db.damaged-{stamp}")
        for src, dst in zip(_files(old), _files(kept), strict=True):
            if src.exists():
                os.replace(src, dst)
        done.kept_as = kept.name
    else:
        for stale in _files(old)[1:]:  # a -wal without its database belongs to nothing
            if stale.exists():
                os.replace(stale, stale.with_name(stale.name + f".orphan-{os.getpid()}"))
    os.replace(new, old)
    sync_dir(folder)
    done.seconds = time.perf_counter() - started
    return done


def _encrypts(folder: Path, old: Path, plain: bool) -> bool:
    """Whether the new database is encrypted: a sealed study's is, which needs its key
    (one sealed by an earlier version, its frames alone encrypted, is so encrypted too).
    Nothing is built while the study's kind is in doubt: an old database that is not plain
    SQLite is an encrypted study's or a damaged one, and only its key says which, or the
    user's ``--plain`` (a study made without a key)."""
    marker, keyed = (folder / sealing.MARKER).exists(), sealing.has_key()
    plainly = "a study made without a key: --plain"
    if plain:
        if marker:
            raise sealing.StudyKeyError(
                f"{folder}: sealed.json says its frames are encrypted; rebuild it with its "
                f"key ({sealing.KEY_FROM}), not --plain"
            )
        return False
    if marker and not keyed:
        raise sealing.StudyKeyError(
            f"{folder}: its frames are encrypted; rebuilding it needs its key ({sealing.KEY_FROM})"
        )
    sealing.check_marker_key(folder)  # never a new database under another study's key
    if database.is_encrypted(old):
        if not keyed:
            raise sealing.StudyKeyError(
                f"{old}: not plain SQLite: an encrypted study's database (rebuilding it needs "
                f"its key: {sealing.KEY_FROM}) or a damaged one ({plainly}); nothing was changed"
            )
        if not marker:  # its copy of sealed.json is the only salt left: it must open
            try:
                connect_readonly(old).close()
            except database.Unreadable:
                raise sealing.StudyKeyError(
                    f"{old}: does not open with the key given, and there is no sealed.json: "
                    f"another study's key, or damaged ({plainly}); nothing was changed"
                ) from None
        return True
    if not keyed:
        return False
    try:
        return marker or sealing.is_sealed(folder)  # the old database's copy
    except sealing.StudyKeyError:  # a damaged plain database: a study made without a key
        return False


def _index(folder: Path, db: sqlite3.Connection, done: Rebuilt) -> None:
    """Every sound record into the frames table, in archive order."""
    found = archive.segments(folder / "archive")
    done.segments = len(found)
    for n, (number, path) in enumerate(found):
        last = n == len(found) - 1
        size = path.stat().st_size
        for item in archive.scan(folder / "archive", number):
            if isinstance(item, Damage):
                _damage(folder, item, last and item.offset + item.length >= size, done)
            else:
                _add(db, item, done)


def _add(db: sqlite3.Connection, item: Scanned, done: Rebuilt) -> None:
    r = item.record
    where = f"archive/{item.segment:06d}.bin offset {item.offset}"
    cur = db.execute(
        f"INSERT OR IGNORE INTO frames ({schema.FRAME_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (
            r.session,
            r.index,
            item.segment,
            item.offset,
            r.length,
            r.codec,
            r.timestamp_us,
            r.width,
            r.height,
            r.crc,
            r.origin,
        ),
    )
    if cur.rowcount == 0:
        first = db.execute(
            "SELECT segment, offset FROM frames WHERE session = ? AND idx = ?", (r.session, r.index)
        ).fetchone()
        done.problems.append(
            f"frame {r.session}:{r.index}: a second record at {where}, not indexed (the "
            f"first, in archive/{first[0]:06d}.bin at offset {first[1]}, is)"
        )
        return
    done.frames += 1
    if not item.data_ok:
        done.problems.append(
            f"frame {r.session}:{r.index}: its bytes at {where} do not match the CRC-32C its "
            "record carries; indexed, and named by `study verify`"
        )


def _damage(folder: Path, d: Damage, at_end: bool, done: Rebuilt) -> None:
    where = f"archive/{d.segment:06d}.bin: {d.length:,} bytes at offset {d.offset}"
    if not at_end:
        done.problems.append(f"{where} hold no readable record ({d.what}); not indexed")
        return
    # The next run cuts what follows the last indexed frame as a write torn by a crash;
    # a copy keeps the bytes in case they are a whole frame behind a damaged header.
    copy = folder / f"unindexed-{d.segment:06d}-{d.offset}.bin"
    with open(folder / "archive" / f"{d.segment:06d}.bin", "rb") as f:
        f.seek(d.offset)
        copy.write_bytes(f.read(min(d.length, archive.MAX_FRAME + 4096)))
    done.notes.append(
        f"{where}, the archive's end, hold no whole record ({d.what}): a write torn by a "
        f"crash; the next run cuts them (a copy is in {copy.name})"
    )


def _salvage(old: Path, db: sqlite3.Connection, done: Rebuilt) -> None:
    """What only the database held, from the old one if it is sound."""
    if not old.exists() or old.stat().st_size == 0:
        done.salvage_note = "there was no old database"
        return
    try:
        src = connect_readonly(old)
    except database.Unreadable as exc:  # an encrypted one whose page 1 is damaged
        done.salvage_note = f"the old database cannot be opened ({exc})"
        return
    try:
        check = src.execute("PRAGMA quick_check").fetchone()[0]
        found = schema.tables(src)
        if check != "ok" or schema.version(src) > schema.VERSION:
            done.salvage_note = f"the old database is damaged ({check})"
            return
        if not {t for t, _, _ in SALVAGED} - OPTIONAL <= found:
            done.salvage_note = "the old database holds no study"
            return
        db.execute("SAVEPOINT salvage")
        for table, cols, cond in SALVAGED:
            if table not in found:
                continue
            n = len(cols.split(","))
            marks = ", ".join("?" * n)
            if cond is None:
                sql, rows = (
                    f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                    _rows(src, table, cols),
                )
            else:
                sql = f"INSERT OR IGNORE INTO {table} ({cols}) SELECT {marks} WHERE EXISTS ({cond})"
                rows = (r + r[:2] for r in _rows(src, table, cols))
            before = db.total_changes
            db.executemany(sql, rows)
            done.salvaged[table] = db.total_changes - before
        db.executemany(
            "UPDATE frames SET received_us = ? WHERE session = ? AND idx = ?",
            _rows(src, "frames", "received_us, session, idx"),
        )
        db.execute("RELEASE salvage")
    except database.DatabaseError as exc:
        with contextlib.suppress(*database.Error):
            db.execute("ROLLBACK TO salvage")
            db.execute("RELEASE salvage")
        done.salvaged = {}
        done.salvage_note = f"the old database could not be read through ({exc})"
    finally:
        src.close()


def _rows(src: sqlite3.Connection, table: str, cols: str) -> Iterator[tuple[object, ...]]:
    yield from src.execute(f"SELECT {cols} FROM {table}")
