"""Patient data at rest: a study run with a key holds no frame in the clear, reads back
byte-identical with its key, and without it (or with another) fails in one line having
written nothing. The runtime, `study export`, `report` and `study verify` are the real
commands; the archive is searched byte by byte."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edge.study import sealing
from edge.study.errors import CorruptFrameError
from edge.study.store import Study
from tests import mounts
from tests.sealed_studies import (
    copy_of,
    frame_count,
    keygen,
    make_sealed,
    plain_database,
    run_keyed,
    same_frames,
    sealed_archive,
    study_files,
)
from tests.study_runs import CLASSIFIER_ONLY, cli

pytestmark = pytest.mark.skipif(
    pytest.importorskip("cryptography") is None, reason="cryptography is not installed"
)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_sealed(tmp_path_factory.mktemp("sealed"))


@pytest.mark.slow
def test_no_frame_is_in_the_clear_and_each_reads_back_byte_identical(sealed, tmp_path: Path):
    study, frames, key = sealed
    archive = sealed_archive(study)
    originals = {p.name: p.read_bytes() for p in frames.iterdir()}
    assert frame_count(study, key) == len(originals)
    for data in originals.values():
        assert data[100:164] not in archive  # not a stretch of any frame
    assert key.read_text().strip() not in (study / "sealed.json").read_text()
    # Its key opens it: the frames as they came.
    out = tmp_path / "out"
    done = cli("study", "export", study, "--frames", out, "--key", key)
    assert done.returncode == 0, done.stderr
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(originals.values())
    # Its report shows frames in the clear: never inside the study.
    done = cli("report", study, "--key", key)
    assert done.returncode == 2 and "outside the study" in done.stderr, done.stderr
    assert not (study / "report.html").exists()
    done = cli("report", study, "--key", key, "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    # Verify proves it whole with its key; without it, it says so in one line.
    done = cli("study", "verify", study, "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli("study", "verify", study)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "encrypted; give its key" in lines[0]


@pytest.mark.slow
def test_another_key_or_none_fails_in_one_line_and_writes_nothing(sealed, tmp_path: Path):
    study, frames, _ = sealed
    other = keygen(tmp_path / "other.key")
    before = sealed_archive(study)
    for args, said in [
        (["--key", other], "the key given is not this study's"),
        ([], "encrypted; give its key"),
    ]:
        out = tmp_path / "out"
        done = cli("study", "export", study, "--frames", out, *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and said in lines[0], done.stderr
        assert not out.exists()
        done = cli("report", study, "--out", tmp_path / "report", *args)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert not (tmp_path / "report" / "report.html").exists()
    # Nor does a runtime with another key add to it.
    config = tmp_path / "other.toml"
    config.write_text(f'[storage]\nkey_file = "{other}"\nreserve_mb = 0\n')
    done = cli("run", "--source", f"dir://{frames}", "--study", study, "--config", config,
               *CLASSIFIER_ONLY)  # fmt: skip
    assert done.returncode == 2 and "not this study's" in done.stderr.strip().splitlines()[-1]
    assert sealed_archive(study) == before


@pytest.mark.slow
def test_a_recording_resumed_with_its_key_stores_nothing_twice(sealed, tmp_path: Path):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    run_keyed(frames, copy, key, tmp_path)  # the same folder again: every file is held
    assert frame_count(copy, key) == frame_count(study, key)


def test_a_sealed_frame_opens_only_where_it_was_stored(tmp_path: Path):
    sealing.use_key(keygen(tmp_path / "k"))
    try:
        with Study(tmp_path / "s") as study:
            assert study.sealer is not None
            blob = study.sealer.seal(b"frame five", 1, 5)
            assert study.sealer.open(blob, 1, 5) == b"frame five"
            with pytest.raises(CorruptFrameError, match="do not open"):
                study.sealer.open(blob, 1, 6)  # moved onto another frame's place
    finally:
        sealing.forget_key()


def test_a_key_is_never_kept_in_the_study_nor_laid_on_a_plain_one(tmp_path: Path):
    study = tmp_path / "s"
    study.mkdir()
    try:
        sealing.use_key(keygen(study / "inside.key"))
        with pytest.raises(sealing.StudyKeyError, match="inside the study it locks"):
            Study(study)
        sealing.forget_key()
        with Study(tmp_path / "plain") as plain:  # made without a key, holding a frame
            plain.add(0, 0, b"x", 1, 0)
        sealing.use_key(keygen(tmp_path / "k"))
        with pytest.raises(sealing.StudyKeyError, match="made without a key"):
            Study(tmp_path / "plain")
    finally:
        sealing.forget_key()


def test_a_study_holding_uncommitted_plain_records_is_never_marked_sealed(tmp_path: Path):
    folder = tmp_path / "s"
    with Study(folder) as plain:
        plain.add(0, 0, b"x" * 100, 1, 0)
        plain.abandon()  # written, never committed: records no row holds
    sealing.use_key(keygen(tmp_path / "k"))
    try:
        with pytest.raises(sealing.StudyKeyError, match="made without a key"):
            Study(folder)
        assert not sealing.is_sealed(folder)
    finally:
        sealing.forget_key()


def test_keys_are_never_overwritten_and_bad_ones_are_named(tmp_path: Path):
    key = keygen(tmp_path / "k")
    first = key.read_text()
    done = cli("study", "keygen", key)
    assert done.returncode == 2 and "never overwritten" in done.stderr
    assert key.read_text() == first and key.stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "bad.key"
    bad.write_text("not hex\n")
    done = cli("study", "export", tmp_path, "--frames", tmp_path / "o", "--key", bad)
    assert done.returncode == 2 and "a study key is 64 hex digits" in done.stderr


@pytest.mark.slow
def test_a_lost_sealed_json_is_neither_read_as_plain_frames_nor_lost(sealed, tmp_path: Path):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    marker = (copy / "sealed.json").read_text()
    (copy / "sealed.json").unlink()
    before = sealed_archive(copy)
    # Without it and without the key: refused as encrypted, never exported as ciphertext.
    out = tmp_path / "out"
    done = cli("study", "export", copy, "--frames", out)
    assert done.returncode == 2 and "give its key" in done.stderr, done.stderr
    assert not out.exists()
    # Nor does a runtime without the key add plain frames to it.
    done = cli("run", "--source", f"dir://{frames}", "--study", copy, *CLASSIFIER_ONLY)
    assert done.returncode == 2 and "give its key" in done.stderr.strip().splitlines()[-1]
    assert sealed_archive(copy) == before
    # With the key, the database's copy opens the frames as they came (and the reader
    # leaves the folder as it was, but for its audit line)...
    files = {p.name for p in copy.iterdir()} | {"audit.log"}
    done = cli("study", "export", copy, "--frames", out, "--key", key)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in copy.iterdir()} == files
    assert same_frames(out, frames)
    # ...and the runtime's open puts sealed.json back as it was.
    run_keyed(frames, copy, key, tmp_path)
    assert (copy / "sealed.json").read_text() == marker
    assert sealed_archive(copy) == before


@pytest.mark.slow
def test_a_sealed_json_that_differs_from_the_database_copy_is_refused(sealed, tmp_path: Path):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    doc = json.loads((copy / "sealed.json").read_text())
    doc["salt"] = "00" * 16
    (copy / "sealed.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    done = cli("study", "export", copy, "--frames", out, "--key", key)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "differs from the database" in lines[0]
    assert not out.exists()
    before = sealed_archive(copy)  # nor does the runtime add to it
    config = tmp_path / "keyed.toml"
    config.write_text(f'[storage]\nkey_file = "{key}"\nreserve_mb = 0\n')
    done = cli("run", "--source", f"dir://{frames}", "--study", copy, "--config", config,
               *CLASSIFIER_ONLY)  # fmt: skip
    assert done.returncode == 2 and "differs from the database" in done.stderr, done.stderr
    assert sealed_archive(copy) == before


@pytest.mark.slow
def test_a_rebuilt_sealed_study_keeps_the_copy(sealed, tmp_path: Path):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    before = study_files(copy)
    done = cli("study", "rebuild", copy)  # without the key: refused, nothing changed
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "needs its key" in lines[0], done.stderr
    assert study_files(copy) == before
    done = cli("study", "rebuild", copy, "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (copy / "study.db").read_bytes().startswith(b"SQLite format 3")
    (copy / "sealed.json").unlink()
    done = cli("study", "export", copy, "--frames", tmp_path / "out", "--key", key)
    assert done.returncode == 0, done.stderr
    assert same_frames(tmp_path / "out", frames)


@pytest.mark.slow
def test_a_schema_2_sealed_study_gains_the_copy_when_the_runtime_opens_it(sealed, tmp_path: Path):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    plain_database(copy, key)  # as a version before the database's own encryption
    db = sqlite3.connect(copy / "study.db")
    with db:
        db.execute("DROP TABLE sealing")
        db.execute("PRAGMA user_version = 2")
    db.close()
    run_keyed(frames, copy, key, tmp_path)  # migrates, and keeps the copy
    (copy / "sealed.json").unlink()
    done = cli("study", "export", copy, "--frames", tmp_path / "out", "--key", key)
    assert done.returncode == 0, done.stderr
    assert same_frames(tmp_path / "out", frames)


@pytest.mark.slow
def test_a_sealed_study_without_sealed_json_on_a_read_only_disk_is_not_read_as_plain(
    sealed, tmp_path: Path
):
    study, frames, key = sealed
    with mounts.tmpfs(tmp_path / "ro", "16m") as mount:
        copy = copy_of(study, mount / "study")
        (copy / "sealed.json").unlink()
        before = sorted(p.name for p in copy.iterdir())
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode == 0
        out = tmp_path / "out"
        done = cli("study", "export", copy, "--frames", out)
        assert done.returncode == 2 and "give its key" in done.stderr, done.stderr
        assert not out.exists()
        done = cli("study", "export", copy, "--frames", out, "--key", key)
        assert done.returncode == 0, done.stderr
        assert same_frames(out, frames)
        assert sorted(p.name for p in copy.iterdir()) == before
