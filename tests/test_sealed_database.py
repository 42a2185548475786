"""An encrypted study's database: no page of it in the clear, and a study encrypted
whole or not at all. Older studies (frames alone sealed) still open, and `study rebuild`
with the key encrypts them; rebuild never builds a sealed study's index plain or under
another key. The runtime and the commands are the real ones; files are read byte by byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.study import sealing
from edge.study.store import Study
from tests.sealed_studies import (
    copy_of,
    frame_count,
    keygen,
    make_sealed,
    plain_database,
    query,
    run_keyed,
    same_frames,
    study_files,
)
from tests.study_runs import CLASSIFIER_ONLY, cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(pytest.importorskip("sqlcipher3") is None, reason="no sqlcipher3"),
]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_sealed(tmp_path_factory.mktemp("sealed"))


@pytest.mark.slow
def test_the_database_holds_nothing_in_the_clear(sealed):
    """The frames' index, times, origins and every finding: encrypted page by page."""
    study, frames, key = sealed
    names = {str(r[0]) for r in query(study, key, "SELECT origin FROM frames")}
    labels = {str(r[0]) for r in query(study, key, "SELECT label FROM findings")}
    assert names == {p.name for p in frames.iterdir()} and labels  # what to look for
    raw = b"".join(p.read_bytes() for p in study.glob("study.db*"))
    assert not raw.startswith(b"SQLite format 3")
    for text in names | labels | {"CREATE TABLE", "frames"}:
        assert text.encode() not in raw, text
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        sqlite3.connect(study / "study.db").execute("SELECT * FROM frames")


@pytest.mark.slow
def test_an_encrypted_database_caches_no_more_than_a_plain_one(sealed):
    """sqlcipher3's SQLite caches 8 MB of pages a connection, SQLite's own 2 MB: the
    encrypted study is given the plain one's, so it costs a board no more memory."""
    study, _, key = sealed
    plain = sqlite3.connect(":memory:").execute("PRAGMA cache_size").fetchone()
    assert query(study, key, "PRAGMA cache_size") == [plain]


@pytest.mark.slow
def test_a_study_sealed_before_its_database_was_encrypted_opens_and_rebuild_encrypts_it(
    sealed, tmp_path: Path
):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    plain_database(copy, key)
    assert (copy / "study.db").read_bytes().startswith(b"SQLite format 3")
    found = query(copy, key, "SELECT COUNT(*) FROM findings")
    # Read and resumed as it was: frames opened with the key, nothing stored twice.
    done = cli("study", "export", copy, "--frames", tmp_path / "out", "--key", key)
    assert done.returncode == 0, done.stderr
    assert same_frames(tmp_path / "out", frames)
    run_keyed(frames, copy, key, tmp_path)
    assert frame_count(copy, key) == len(list(frames.iterdir()))
    # Rebuilt with its key: the database encrypted, every frame and finding kept.
    done = cli("study", "rebuild", copy, "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (copy / "study.db").read_bytes().startswith(b"SQLite format 3")
    assert query(copy, key, "SELECT COUNT(*) FROM findings") == found
    done = cli("study", "export", copy, "--frames", tmp_path / "again", "--key", key)
    assert done.returncode == 0, done.stderr
    assert same_frames(tmp_path / "again", frames)


def _run_fails(frames: Path, study: Path, tmp: Path, *key: Path) -> str:
    """``run`` on the study, which must refuse: its last line."""
    config = tmp / "run.toml"
    config.write_text("[storage]\nreserve_mb = 0\n" + (f'key_file = "{key[0]}"\n' if key else ""))
    done = cli("run", "--source", f"dir://{frames}", "--study", study, "--config", config,
               *CLASSIFIER_ONLY)  # fmt: skip
    assert done.returncode == 2, done.stderr
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_study_is_encrypted_whole_or_not_at_all(sealed, tmp_path: Path):
    """Never frames sealed beside a plain database, nor a plain database made for a
    sealed study."""
    _, frames, key = sealed
    # A study opened without a key and closed before its first frame has a plain
    # database: a run with the key does not seal frames into it.
    with Study(tmp_path / "s"):
        pass
    assert (tmp_path / "s" / "study.db").read_bytes().startswith(b"SQLite format 3")
    before = study_files(tmp_path / "s")
    assert "holds no frame yet" in _run_fails(frames, tmp_path / "s", tmp_path, key)
    assert study_files(tmp_path / "s") == before
    # A sealed study that lost its database before its first frame: no plain one is made
    # for it without the key.
    sealing.use_key(key)
    try:
        with Study(tmp_path / "sealed"):
            pass
    finally:
        sealing.forget_key()
    assert (tmp_path / "sealed" / "sealed.json").exists()
    for path in (tmp_path / "sealed").glob("study.db*"):
        path.unlink()
    assert "give its key" in _run_fails(frames, tmp_path / "sealed", tmp_path)
    assert not (tmp_path / "sealed" / "study.db").exists()


@pytest.mark.slow
def test_rebuild_never_builds_a_lost_sealed_json_study_plain_or_under_another_key(
    sealed, tmp_path: Path
):
    study, frames, key = sealed
    copy = copy_of(study, tmp_path / "study")
    (copy / "sealed.json").unlink()
    before = study_files(copy)
    other = keygen(tmp_path / "other.key")
    for args, said in [
        ([], "an encrypted study's database (rebuilding it needs its key"),
        (["--key", other], "does not open with the key given, and there is no sealed.json"),
    ]:
        done = cli("study", "rebuild", copy, *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and said in lines[0], done.stderr
        assert study_files(copy) == before
    # With its key: rebuilt encrypted, the database's copy of sealed.json kept, so the
    # frames open and the runtime puts sealed.json back.
    done = cli("study", "rebuild", copy, "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli("study", "export", copy, "--frames", tmp_path / "out", "--key", key)
    assert done.returncode == 0, done.stderr
    assert same_frames(tmp_path / "out", frames)
    run_keyed(frames, copy, key, tmp_path)
    assert (copy / "sealed.json").read_text() == (study / "sealed.json").read_text()
    # --plain is for a study made without a key: never one that sealed.json marks.
    done = cli("study", "rebuild", copy, "--plain")
    assert done.returncode == 2 and "not --plain" in done.stderr, done.stderr
