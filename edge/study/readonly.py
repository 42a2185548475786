"""Opening a study folder to look at it: read-only, no lock taken, nothing created.

Every way a folder can be unusable is a ``StudyError`` of one line naming it: missing,
not a study, a ``study.db`` that is not SQLite, missing or empty while the archive holds
frames, written by a newer capsule-edge.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.study import archive, database, schema
from edge.study.errors import StudyError


def is_study(folder: Path) -> bool:
    return (folder / "study.db").is_file() or (folder / "archive").is_dir()


def connect_readonly(db_path: Path) -> sqlite3.Connection:
    """A read-only connection that leaves the folder as it is.

    SQLite's ``mode=ro`` on a WAL database creates ``-wal`` and ``-shm`` files when they
    are missing (a study closed cleanly has none), so a study nobody has open is opened
    ``immutable`` instead: with no ``-wal`` there is no writer whose pages it could miss.
    A study being written has its ``-wal``, and is read through it like any reader.
    """
    wal = db_path.with_name(db_path.name + "-wal")
    mode = "ro" if wal.exists() else "ro&immutable=1"
    db = database.connect(db_path, uri=f"file:{db_path}?mode={mode}", check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    return db


@dataclass
class StudyView:
    """A study opened for reading."""

    folder: Path
    db: sqlite3.Connection
    version: int

    @property
    def archive_dir(self) -> Path:
        return self.folder / "archive"

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StudyView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_study(folder: Path) -> StudyView:
    """The study at ``folder`` for reading, or a one-line ``StudyError``."""
    if not folder.exists():
        raise StudyError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder")
    if not is_study(folder):
        raise StudyError(f"{folder}: not a study folder (no study.db, no archive/)")
    db_path = folder / "study.db"
    held = archive.archive_bytes(folder / "archive")
    rebuild = f"`capsule-edge study rebuild {folder}` recovers it"
    if not db_path.is_file() or db_path.stat().st_size == 0:
        what = "missing" if not db_path.is_file() else "empty"
        if held:
            raise StudyError(f"{db_path}: {what}, but archive/ holds {held:,} bytes: {rebuild}")
        raise StudyError(f"{db_path}: {what}, and archive/ holds no frames: an empty study")
    try:
        db = connect_readonly(db_path)
    except database.Error as exc:
        raise StudyError(f"{db_path}: cannot be opened ({exc})") from None
    try:
        found = schema.tables(db)
        version = schema.version(db)
    except database.DatabaseError as exc:
        db.close()
        raise StudyError(f"{db_path}: not a study database ({exc}); {rebuild}") from None
    if "frames" not in found:
        db.close()
        raise StudyError(f"{db_path}: not a study database (no frames table); {rebuild}")
    if version > schema.VERSION:
        db.close()
        raise StudyError(
            f"{db_path}: written by a newer capsule-edge (schema {version}, this one "
            f"knows {schema.VERSION})"
        )
    return StudyView(folder, db, version)


def lock_holder(folder: Path) -> str | None:
    """Who holds the study's lock now (a runtime writing it), or None; takes no lock
    where the kernel lists its locks (``/proc/locks``), so a runtime starting this very
    moment never finds it taken by us."""
    path = folder / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never written by a runtime of this version
    try:
        held = _listed(os.fstat(fd))
        if held is None:  # no /proc/locks: ask the lock itself, at once released
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held = False
            except OSError:
                held = True
        if not held:
            return None
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
        return text or "another process"
    finally:
        os.close(fd)  # releases the shared lock, if one was taken


def _listed(st: os.stat_result) -> bool | None:
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    me = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if "FLOCK" in parts and me in parts and "->" not in parts:
            return True
    return False
