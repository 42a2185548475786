"""The study database's schema, its version (``PRAGMA user_version``) and migrations.

Version 0 is the layout before versions were kept: no CRC per frame, and frames the
backlog let go of were marked ``skipped`` for good. Migrating computes each frame's
CRC-32C from the archive once, and lets those frames be inferred on the next run.
Version 1 kept only a classifier's top class; version 2 keeps every class score (the
timeline is smoothed over them); frames of a version 1 study have none, and the report
reads their top class instead. Version 3 keeps a copy of an encrypted study's
``sealed.json`` (its salt and key id: without them no frame opens) in ``sealing``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

VERSION = 3

TABLES = """
CREATE TABLE frames (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,       -- of the frame's bytes in the segment
    length INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    timestamp_us INTEGER NOT NULL,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    received_us INTEGER NOT NULL DEFAULT 0,
    crc INTEGER,                   -- CRC-32C of the bytes, checked on every read
    origin TEXT,                   -- a folder frame's relative path
    PRIMARY KEY (session, idx)
);
CREATE INDEX frames_origin ON frames (origin) WHERE origin IS NOT NULL;
CREATE TABLE findings (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    x0 REAL, y0 REAL, x1 REAL, y1 REAL
);
CREATE INDEX findings_frame ON findings (session, idx);
CREATE TABLE class_scores (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    model TEXT NOT NULL,
    scores TEXT NOT NULL,          -- JSON: {label: probability} for every class
    PRIMARY KEY (session, idx, model)
);
CREATE TABLE inference (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,          -- done | failed (no row: not inferred yet)
    reason TEXT,
    inferred_ms REAL,              -- fully received -> findings ready
    PRIMARY KEY (session, idx)
);
CREATE TABLE ledger (
    session INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (session, idx)
);
CREATE TABLE link_stats (
    time_us INTEGER NOT NULL,
    stats TEXT NOT NULL            -- JSON: the link's counters at that moment
);
CREATE TABLE runs (
    started_us INTEGER NOT NULL,
    stopped_us INTEGER,
    source TEXT NOT NULL,
    settings TEXT NOT NULL,        -- JSON: the effective configuration and models used
    summary TEXT                   -- JSON, written at a clean stop
);
CREATE TABLE sealing (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row at most
    doc TEXT NOT NULL              -- JSON: sealed.json's copy (cipher, salt, key id)
);
"""

CLASS_SCORES = next(t for t in TABLES.split(";") if "TABLE class_scores" in t)
SEALING = next(t for t in TABLES.split(";") if "TABLE sealing" in t)

FRAME_COLUMNS = (
    "session, idx, segment, offset, length, codec, timestamp_us, width, height, "
    "received_us, crc, origin"
)


def tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def create(db: sqlite3.Connection) -> None:
    with db:
        db.execute("BEGIN")
        for statement in TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {VERSION}")


def migrate(db: sqlite3.Connection, frame_crc: Callable[[int, int, int], int]) -> list[str]:
    """Bring a database of an older version up to ``VERSION``; the steps taken.
    ``frame_crc(segment, offset, length)`` reads a stored frame and returns its CRC."""
    done = []
    if version(db) == 0:
        rows = db.execute("SELECT session, idx, segment, offset, length FROM frames").fetchall()
        with db:
            db.execute("BEGIN")
            db.execute("ALTER TABLE frames ADD COLUMN crc INTEGER")
            db.execute("ALTER TABLE frames ADD COLUMN origin TEXT")
            db.execute("CREATE INDEX frames_origin ON frames (origin) WHERE origin IS NOT NULL")
            db.executemany(
                "UPDATE frames SET crc = ? WHERE session = ? AND idx = ?",
                ((frame_crc(seg, off, n), s, i) for s, i, seg, off, n in rows),
            )
            skipped = db.execute("DELETE FROM inference WHERE status = 'skipped'").rowcount
            db.execute("PRAGMA user_version = 1")
        done.append(f"schema 0 -> 1: CRC of {len(rows)} frames; {skipped} skipped frames to infer")
    for to, table, what in (
        (2, CLASS_SCORES, "every class score kept (earlier frames keep their top one)"),
        (3, SEALING, "a copy of sealed.json kept in the database"),
    ):
        if version(db) == to - 1:  # a new table, nothing to fill
            with db:
                db.execute("BEGIN")
                db.execute(table)
                db.execute(f"PRAGMA user_version = {to}")
            done.append(f"schema {to - 1} -> {to}: {what}")
    return done
