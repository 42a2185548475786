"""Encrypted studies for the tests: one made by the real runtime with a key, and the
ways to look into it (its database opened with the key as the commands open it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.study import database, sealing
from edge.study.readonly import connect_readonly
from tests.study_runs import CLASSIFIER_ONLY, cli, write_frames


def keygen(path: Path) -> Path:
    done = cli("study", "keygen", path)
    assert done.returncode == 0, done.stderr
    return path


def run_keyed(frames: Path, study: Path, key: Path, tmp: Path) -> None:
    config = tmp / f"{key.stem}.toml"
    config.write_text(f'[storage]\nkey_file = "{key}"\nreserve_mb = 0\n')
    done = cli("run", "--source", f"dir://{frames}", "--study", study, "--config", config,
               *CLASSIFIER_ONLY)  # fmt: skip
    assert done.returncode == 0, done.stderr


def query(study: Path, key: Path, sql: str) -> list[tuple[object, ...]]:
    """A query on the study's database, opened with ``key`` as the commands open it."""
    sealing.use_key(key)
    try:
        db = connect_readonly(study / "study.db")
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    finally:
        sealing.forget_key()


def frame_count(study: Path, key: Path) -> int:
    return int(query(study, key, "SELECT COUNT(*) FROM frames")[0][0])


def sealed_archive(study: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((study / "archive").glob("*.bin")))


def copy_of(study: Path, to: Path) -> Path:
    """A copy of the module's study for a test to change."""
    shutil.copytree(study, to)
    return to


def study_files(study: Path) -> list[tuple[str, bytes]]:
    """The study's files and their bytes, but for its lock (which names its last holder)."""
    return sorted(
        (p.name, p.read_bytes()) for p in study.rglob("*") if p.is_file() and p.name != "lock"
    )


def same_frames(out: Path, frames: Path) -> bool:
    """``out`` holds exactly the frames of ``frames``, byte for byte."""
    return sorted(p.read_bytes() for p in out.iterdir()) == sorted(
        p.read_bytes() for p in frames.iterdir()
    )


def make_sealed(tmp: Path) -> tuple[Path, Path, Path]:
    """A study run with a key over 30 frames: the study, the frames, the key."""
    frames = write_frames(tmp / "frames", 30)
    key = keygen(tmp / "site.key")
    study = tmp / "study"
    run_keyed(frames, study, key, tmp)
    return study, frames, key


def plain_database(study: Path, key: Path) -> None:
    """The study's database decrypted in place (SQLCipher's own export), as a study sealed
    before databases were encrypted has it: its frames alone encrypted."""
    sealing.use_key(key)
    try:
        db = database.connect(study / "study.db", isolation_level=None)
        plain = study / "plain.db"
        db.execute(f"ATTACH DATABASE '{plain}' AS plain KEY ''")
        db.execute("SELECT sqlcipher_export('plain')")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute(f"PRAGMA plain.user_version = {version}")
        db.execute("DETACH DATABASE plain")
        db.close()
    finally:
        sealing.forget_key()
    plain.replace(study / "study.db")
