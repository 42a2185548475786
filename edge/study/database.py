"""``study.db`` opened, in the clear or encrypted page by page (SQLCipher).

A study made with a key keeps its database encrypted too: the frames' index, their
times, every finding and class score, the runs' settings. SQLCipher (through the
``sqlcipher3`` package, which carries its own SQLite) encrypts each page with AES-256
and authenticates it with HMAC-SHA512; the write-ahead log holds encrypted pages only.
Its key is derived from the site key for this use alone (HMAC-SHA256), given raw, so
opening costs no key stretching. A database is known to be encrypted by its first 16
bytes, which are SQLite's plain header otherwise; a plain one is opened with Python's
own ``sqlite3``: every study made without a key, and one sealed by an earlier version
(its frames alone encrypted; ``capsule-edge study rebuild --key`` encrypts its database).

Errors of either library are caught as ``Error`` / ``DatabaseError`` (tuples of both).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

from edge.study.errors import StudyError

PLAIN_HEADER = b"SQLite format 3\x00"
PLAIN_CACHE_KIB = -2000  # SQLite's default page cache, 2000 KiB (negative: in KiB)
NOT_A_DATABASE = 26  # SQLITE_NOTADB: what a wrong key (or a damaged first page) gives

try:  # imported up front so that its exceptions can be caught everywhere
    import sqlcipher3 as _cipher
except ImportError:  # a device install without it reads plain studies only
    _cipher = None

Error: tuple[type[Exception], ...] = (sqlite3.Error,)
DatabaseError: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
if _cipher is not None:
    Error += (_cipher.Error,)
    DatabaseError += (_cipher.DatabaseError,)
# What opening and reading a study database can raise: either library's error, or a
# one-line StudyError from ``connect`` (a key missing, or not the database's).
Unreadable: tuple[type[Exception], ...] = (*Error, StudyError)


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` holds a database that is not plain SQLite (encrypted, or not a
    database at all: only its key tells which)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PLAIN_HEADER))
    except OSError:
        return False
    # Zeros are a page a crash or a disk left blank, never SQLCipher's random salt.
    return len(head) == len(PLAIN_HEADER) and head not in (PLAIN_HEADER, bytes(len(head)))


def version() -> str | None:
    """SQLCipher's version, or None where ``sqlcipher3`` is not installed."""
    if _cipher is None:
        return None
    db = _cipher.connect(":memory:")
    try:
        return str(db.execute("PRAGMA cipher_version").fetchone()[0])
    finally:
        db.close()


def connect(
    path: Path, *, uri: str | None = None, encrypt: bool = False, **kwargs: Any
) -> sqlite3.Connection:
    """A connection to ``path`` (or to the ``uri`` naming it), encrypted where the file
    is, or where it is new and ``encrypt`` is asked: then with the process's key, and a
    one-line ``StudyKeyError`` without it, with another, or without sqlcipher3."""
    from edge.study import sealing  # sealing -> readonly -> database

    target = uri if uri is not None else str(path)
    if uri is not None:
        kwargs["uri"] = True
    new = not path.exists() or path.stat().st_size == 0
    if not (is_encrypted(path) or (new and encrypt)):
        return cast(sqlite3.Connection, sqlite3.connect(target, **kwargs))
    if _cipher is None:
        raise sealing.StudyKeyError(
            f"{path}: an encrypted study database; reading it needs sqlcipher3 "
            "(pip install sqlcipher3)"
        )
    key = sealing.database_key()
    if key is None:
        if (path.parent / sealing.MARKER).exists():
            raise sealing.StudyKeyError(
                f"{path}: the study's database is encrypted; {sealing.GIVE_KEY}"
            )
        raise StudyError(  # without sealed.json, only the key can tell which
            f"{path}: not a study database: not plain SQLite, so damaged, or an encrypted "
            f"study's that lost its sealed.json; if so, {sealing.GIVE_KEY}"
        )
    db = _cipher.connect(target, **{"timeout": 10.0, **kwargs})  # a writer's commit waited for
    try:
        db.execute("PRAGMA cipher_log_level = NONE")  # its own lines on stderr: ours say it
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        db.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary tables never on disk
        # sqlcipher3's SQLite is built with an 8 MB page cache a connection, four times
        # SQLite's own: a soak grew 10 MB with it. An encrypted study costs a board the
        # memory a plain one does.
        db.execute(f"PRAGMA cache_size = {PLAIN_CACHE_KIB}")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except _cipher.DatabaseError as exc:
        db.close()
        if getattr(exc, "sqlite_errorcode", NOT_A_DATABASE) != NOT_A_DATABASE:
            raise  # busy, an I/O error: the caller's to word, not a key's
        sealing.check_marker_key(path.parent)  # another study's key, as sealed.json names it
        raise sealing.StudyKeyError(
            f"{path}: does not open with the key given (key id {sealing.current_key_id()}): "
            "another study's key, or a damaged database; nothing was changed"
        ) from None
    return cast(sqlite3.Connection, db)
