"""The study store refuses what it cannot prove: a missing, empty or damaged index, a
second writer, a folder removed under it, a database older than its archive."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.study import archive, store
from edge.study.errors import CorruptFrameError, StorageError, StudyBusyError, StudyError
from edge.study.store import Study

REPO = Path(__file__).resolve().parents[1]


def payload(index: int) -> bytes:
    return random.Random(index).randbytes(2000 + index % 500)


def _study(folder: Path, count: int = 30) -> int:
    """A closed study of ``count`` frames; the archive's size."""
    study = Study(folder)
    for i in range(count):
        assert study.add(1, i, payload(i), codec=1, timestamp_us=i) is not None
        if i % 7 == 6:
            study.commit()
    study.close()
    return archive.archive_bytes(folder / "archive")


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_missing_or_empty_database_is_an_error_and_the_archive_is_kept(tmp_path: Path, how):
    folder = tmp_path / "study"
    size = _study(folder)
    db = folder / "study.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")
    with pytest.raises(StudyError, match="study rebuild"):
        Study(folder)
    assert archive.archive_bytes(folder / "archive") == size
    # The same through the command a user runs: exit 2, one line, nothing cut.
    (tmp_path / "none").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "run",
            "--source",
            f"dir://{tmp_path / 'none'}",
            *("--study", str(folder), "--no-http", "-q"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 2 and "study rebuild" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert archive.archive_bytes(folder / "archive") == size


def test_a_damaged_database_is_an_error_and_cuts_nothing(tmp_path: Path):
    folder = tmp_path / "study"
    size = _study(folder, 400)
    db = folder / "study.db"
    blob = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page * 2, len(blob), page * 3):  # flip bytes in several pages
        blob[offset + 100 : offset + 140] = bytes(40)
    db.write_bytes(bytes(blob))
    with pytest.raises(StudyError, match=r"damaged|not where it says|nothing was changed"):
        Study(folder)
    assert archive.archive_bytes(folder / "archive") == size


def test_a_database_older_than_its_archive_is_an_error(tmp_path: Path):
    """A study.db restored from an earlier copy: the records after its last frame were
    acknowledged once, and must not be cut."""
    folder = tmp_path / "study"
    _study(folder, 10)
    backup = (folder / "study.db").read_bytes()
    study = Study(folder)
    for i in range(10, 10 + store.MAX_COMMIT_FRAMES + 50):  # more than one commit holds
        study.add(1, i, b"frame %d" % i, codec=1, timestamp_us=i)
        if i % 50 == 0:
            study.commit()
    study.close()
    size = archive.archive_bytes(folder / "archive")
    for extra in ("-wal", "-shm"):
        Path(f"{folder / 'study.db'}{extra}").unlink(missing_ok=True)
    (folder / "study.db").write_bytes(backup)
    with pytest.raises(StudyError, match="older than the archive"):
        Study(folder)
    assert archive.archive_bytes(folder / "archive") == size


def test_one_process_per_study_folder(tmp_path: Path):
    folder = tmp_path / "study"
    first = Study(folder)
    try:
        with pytest.raises(StudyBusyError, match=f"pid {os.getpid()}"):
            Study(folder)
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path;"
                "from edge.study.store import Study; Study(Path(sys.argv[1]))",
                str(folder),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert other.returncode != 0 and "in use by pid" in other.stderr
    finally:
        first.close()
    Study(folder).close()  # released with the first


def test_a_removed_study_folder_stops_the_study_before_anything_is_acknowledged(
    tmp_path: Path,
):
    folder = tmp_path / "study"
    study = Study(folder)
    study.add(1, 0, payload(0), codec=1, timestamp_us=0)
    assert study.commit() == [(1, 0)]
    shutil.rmtree(folder)
    study.add(1, 1, payload(1), codec=1, timestamp_us=1)
    with pytest.raises(StorageError, match="removed or replaced"):
        study.commit()  # the runtime acknowledges only what commit() returned
    study.abandon()


def test_a_flipped_archive_byte_is_caught_on_read(tmp_path: Path):
    folder = tmp_path / "study"
    _study(folder, 5)
    study = Study(folder)
    ref = study.ref(1, 3)
    study.close()
    segment = archive.segment_path(folder / "archive", ref.segment)
    with open(segment, "r+b") as f:
        f.seek(ref.offset + 10)
        byte = f.read(1)
        f.seek(ref.offset + 10)
        f.write(bytes([byte[0] ^ 0x01]))
    study = Study(folder)
    try:
        assert study.read(1, 2).data == payload(2)
        with pytest.raises(CorruptFrameError, match="frame 1:3"):
            study.read(1, 3)
    finally:
        study.close()


def test_a_schema_0_study_is_migrated(tmp_path: Path):
    """A study written before schema versions: its frames get their CRC, frames once
    marked skipped for good are inferred again."""
    folder = tmp_path / "study"
    (folder / "archive").mkdir(parents=True)
    db = sqlite3.connect(folder / "study.db")
    db.executescript(
        "CREATE TABLE frames (session INTEGER NOT NULL, idx INTEGER NOT NULL, segment INTEGER"
        " NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, codec INTEGER NOT NULL,"
        " timestamp_us INTEGER NOT NULL, width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT"
        " NULL DEFAULT 0, received_us INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (session, idx));"
        "CREATE TABLE findings (session, idx, model, label, score, x0, y0, x1, y1);"
        "CREATE TABLE inference (session, idx, status, reason, inferred_ms,"
        " PRIMARY KEY (session, idx));"
        "CREATE TABLE ledger (session, idx, outcome, reason, PRIMARY KEY (session, idx));"
        "CREATE TABLE link_stats (time_us, stats);"
        "CREATE TABLE runs (started_us, stopped_us, source, settings, summary);"
    )
    with open(archive.segment_path(folder / "archive", 1), "wb") as f:
        for i in range(3):
            data = payload(i)
            f.write(archive.LEGACY_HEADER.pack(archive.LEGACY_MAGIC, 1, i, i, len(data)))
            db.execute(
                "INSERT INTO frames VALUES (1, ?, 1, ?, ?, 1, ?, 0, 0, 0)",
                (i, f.tell(), len(data), i),
            )
            f.write(data)
    db.execute("INSERT INTO inference VALUES (1, 1, 'skipped', 'backlog full', NULL)")
    db.commit()
    db.close()
    study = Study(folder)
    try:
        assert study.migrations and [study.read(1, i).data for i in range(3)] == [
            payload(i) for i in range(3)
        ]
        assert study.uninferred_count() == 3
        assert study.add(1, 3, payload(3), codec=1, timestamp_us=3) is not None
        study.commit()
    finally:
        study.close()
    study = Study(folder)  # reopens after the migration: the legacy records are sound
    assert [study.read(1, i).data for i in range(4)] == [payload(i) for i in range(4)]
    study.close()
