"""Frames encrypted at rest: each archive record's bytes sealed with AES-256-GCM.

A study made with a key holds ``STUDY/sealed.json`` (the cipher, a random salt and the
key's id, never the key) and seals every frame it stores as

    nonce (12 random bytes) | AES-256-GCM(frame bytes) | tag (16 bytes)

under a key derived for this study alone (HKDF-SHA256 of the site key and the salt), with
the frame's session and index as associated data, so that a record moved to another
place, or into another study, does not open. The record's CRC-32C is that of the sealed
bytes. The study's database is encrypted as well (``edge.study.database``), so that
reading anything of it (verify, export, report, the runtime's own inference) needs the
key; a study sealed by an earlier version has its frames alone encrypted.

The key is 32 random bytes as 64 hex digits, in a file (``[storage] key_file``, ``--key``)
or in ``CAPSULE_EDGE_STUDY_KEY``; ``capsule-edge study keygen FILE`` makes one. It is never
kept beside the study: a key file inside the study folder is refused.

Without the salt no frame opens, even with the key, so the study's database keeps a copy
of ``sealed.json`` (schema 3): either one restores the other when the runtime opens the
study, a reader uses whichever is there, and two that differ are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.study import database
from edge.study.durable import sync_dir
from edge.study.errors import CorruptFrameError, StudyError

MARKER = "sealed.json"
DATABASE = "study.db"
ENV = "CAPSULE_EDGE_STUDY_KEY"
KEY_FROM = f"--key FILE, or ${ENV}"  # where a command takes the key from
GIVE_KEY = f"give its key ({KEY_FROM})"
CIPHER = "AES-256-GCM"
NONCE = 12
TAG = 16
OVERHEAD = NONCE + TAG
_AAD = struct.Struct("<II")  # session, index

log = logging.getLogger(__name__)

_key: bytes | None = None  # the process's key, once given (``use_key``)
_key_from = ""


class StudyKeyError(StudyError):
    """A key missing, malformed, or not this study's: one line, nothing read or written."""


def key_id(key: bytes) -> str:
    return hmac.new(key, b"capsule-edge study key", hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    digits = text.strip()
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise StudyKeyError(
            f"{where}: a study key is 64 hex digits (capsule-edge study keygen FILE)"
        )
    return key


def use_key(key_file: Path | None = None) -> bool:
    """Take the process's key from ``key_file``, else from $CAPSULE_EDGE_STUDY_KEY (if
    set); whether there is one."""
    global _key, _key_from
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a key file"
            raise StudyKeyError(f"{key_file}: cannot read the study key ({reason})") from None
        _key, _key_from = parse_key(text, str(key_file)), str(key_file.resolve())
    elif os.environ.get(ENV):
        _key, _key_from = parse_key(os.environ[ENV], f"${ENV}"), ""
    return _key is not None


def has_key() -> bool:
    return _key is not None


def refuse_key_inside(folder: Path) -> None:
    """A key kept inside the study it would lock is refused before anything is made."""
    if _key_from and Path(_key_from).is_relative_to(folder.resolve()):
        raise StudyKeyError(f"{_key_from}: the key is inside the study it locks; keep it elsewhere")


def database_key() -> bytes | None:
    """The key of the process's encrypted study databases (``edge.study.database``):
    derived from the site key for that use alone; None without a key."""
    if _key is None:
        return None
    return hmac.new(_key, b"capsule-edge study database v1", hashlib.sha256).digest()


def current_key_id() -> str:
    return key_id(_key) if _key is not None else "none"


def forget_key() -> None:
    global _key, _key_from
    _key, _key_from = None, ""


def new_key_file(path: Path) -> str:
    """A new random key in ``path`` (owner-only; an existing file is never replaced);
    its id."""
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StudyKeyError(f"{path}: exists already; a key is never overwritten") from None
    except OSError as exc:
        raise StudyKeyError(f"{path}: cannot write the key ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:  # on disk before anything uses it
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    sync_dir(path.parent.resolve())
    return key_id(key)


@dataclass(frozen=True)
class Sealer:
    """Seals and opens the frames of one study."""

    aead: Any  # cryptography's AESGCM, imported only for a sealed study

    def seal(self, data: bytes, session: int, index: int) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        sealed: bytes = self.aead.encrypt(nonce, data, _AAD.pack(session, index))
        return nonce + sealed

    def open(self, blob: bytes, session: int, index: int) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            if len(blob) < OVERHEAD:
                raise InvalidTag
            data: bytes = self.aead.decrypt(blob[:NONCE], blob[NONCE:], _AAD.pack(session, index))
        except InvalidTag:
            raise CorruptFrameError(
                f"frame {session}:{index}: its sealed bytes do not open (changed, or moved)"
            ) from None
        return data


def is_sealed(folder: Path) -> bool:
    return (
        (folder / MARKER).exists()
        or database.is_encrypted(folder / DATABASE)
        or _copy(folder) is not None
    )


def _file(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise StudyKeyError(
            f"{folder / MARKER}: unreadable; the study's frames cannot be opened"
        ) from None


def _copy(folder: Path) -> str | None:
    """``sealed.json`` as the study's database keeps it; None where it keeps none (no
    database, one older than schema 3, a study made without a key). Read without
    changing the folder (a read-only disk, a closed study); a database that cannot be
    read is a StudyKeyError, never taken for a study without a key."""
    from edge.study.readonly import connect_readonly  # readonly -> archive -> sealing

    path = folder / DATABASE
    if not path.exists():
        return None
    try:
        db = connect_readonly(path)
        try:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sealing'").fetchone():
                row = db.execute("SELECT doc FROM sealing").fetchone()
            else:
                row = None
        finally:
            db.close()
    except database.Error as exc:
        raise StudyKeyError(
            f"{path}: cannot be read to tell whether the study is encrypted ({exc})"
        ) from None
    return None if row is None else str(row[0])


def keep_copies(folder: Path, db: sqlite3.Connection) -> None:
    """``sealed.json`` and the database's copy, each restored from the other (the
    runtime's study, once its schema has the table; autocommit)."""
    text, row = _file(folder), db.execute("SELECT doc FROM sealing").fetchone()
    if text is not None and row is None:
        try:
            db.execute("INSERT INTO sealing (doc) VALUES (?)", (text,))
        except database.Error as exc:
            raise StudyKeyError(
                f"{folder / DATABASE}: cannot keep sealed.json's copy ({exc})"
            ) from None
    elif text is None and row is not None:
        _parse(folder, str(row[0]))
        _write_marker(folder, str(row[0]))
        log.warning("%s: was missing; restored from the database's copy", folder / MARKER)


def _derive(key: bytes, salt: bytes) -> Sealer:
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise StudyKeyError(
            "encrypted studies need the cryptography package: pip install cryptography"
        ) from None

    hkdf = HKDF(hashes.SHA256(), length=32, salt=salt, info=b"capsule-edge archive v1")
    return Sealer(AESGCM(hkdf.derive(key)))


def _marker(folder: Path) -> dict[str, Any] | None:
    """What sealed.json and the database's copy say; None for a study made without a key.
    A key that is not sealed.json's is named as such before its database is tried."""
    mine = _file_doc(folder)
    if mine is not None:
        _check_key(folder, mine)
    copy = _copy(folder)
    docs = [d for d in (mine, None if copy is None else _parse(folder, copy)) if d is not None]
    if not docs:
        return None
    if len(docs) == 2 and docs[0] != docs[1]:
        raise StudyKeyError(
            f"{folder / MARKER}: differs from the database's copy (one was replaced); "
            "the study's frames are not opened"
        )
    return docs[0]


def _parse(folder: Path, text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
        cipher, salt, key = doc["cipher"], bytes.fromhex(doc["salt"]), str(doc["key_id"])
    except (ValueError, KeyError, TypeError):
        raise StudyKeyError(
            f"{folder / MARKER}: unreadable; the study's frames cannot be opened"
        ) from None
    if cipher != CIPHER:
        raise StudyKeyError(f"{folder}: sealed with {cipher}, which this version lacks")
    return {"salt": salt, "key_id": key}


def sealer_for(folder: Path) -> Sealer | None:
    """The study's sealer; None for a study made without a key. A sealed study without
    the process's key, or with another key, is a one-line StudyKeyError."""
    doc = _marker(folder)
    if doc is None:
        return None
    if _key is None:
        raise StudyKeyError(f"{folder}: its frames are encrypted; {GIVE_KEY}")
    _check_key(folder, doc)
    return _derive(_key, doc["salt"])


def _file_doc(folder: Path) -> dict[str, Any] | None:
    text = _file(folder)
    return None if text is None else _parse(folder, text)


def check_marker_key(folder: Path) -> None:
    """A key that is not the one sealed.json names (if it is there) is refused."""
    doc = _file_doc(folder)
    if doc is not None:
        _check_key(folder, doc)


def _check_key(folder: Path, doc: dict[str, Any]) -> None:
    if _key is not None and key_id(_key) != doc["key_id"]:
        raise StudyKeyError(
            f"{folder}: the key given is not this study's "
            f"(key id {key_id(_key)}, the study's {doc['key_id']})"
        )


def sealer_for_writing(folder: Path, has_frames: bool) -> Sealer | None:
    """As ``sealer_for``, and a new study with a key is sealed from its first frame. A
    study that already holds plain frames is never sealed halfway."""
    if _key is None or _marker(folder) is not None:
        return sealer_for(folder)
    refuse_key_inside(folder)
    if has_frames:
        raise StudyKeyError(f"{folder}: made without a key; its frames stay as they are (no key)")
    if not database.is_encrypted(folder / DATABASE):  # a run without a key made it
        raise StudyKeyError(
            f"{folder}: made without a key (its database is in the clear, though it holds "
            "no frame yet); a study with a key starts in a new folder"
        )
    salt = secrets.token_bytes(16)
    sealer = _derive(_key, salt)  # cryptography present, before anything is written
    doc = {"cipher": CIPHER, "salt": salt.hex(), "key_id": key_id(_key)}
    _write_marker(folder, json.dumps(doc) + "\n")
    return sealer


def _write_marker(folder: Path, text: str) -> None:
    """``sealed.json`` holds ``text`` whole or not at all, across a power cut (owner-only)."""
    path = folder / MARKER
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StudyKeyError(f"{path}: cannot be written ({exc.strerror})") from None
