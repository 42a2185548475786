"""``capsule-edge study ...`` on real studies written by the store, through real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.study import archive, schema
from edge.study.archive import Appender, Record
from edge.study.errors import StudyError
from edge.study.lock import StudyLock
from edge.study.store import Finding, Study

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every check is a capsule-edge process of its own


def payload(session: int, index: int) -> bytes:
    return random.Random(session * 7_919 + index).randbytes(300 + index % 700)


def make_study(folder: Path, frames: int = 20, session: int = 1) -> Path:
    """A study as a runtime leaves it: frames, ledger, inference, findings, a run."""
    with Study(folder) as study:
        run = study.start_run(
            1_000,
            "dir://x",
            json.dumps(
                {
                    "models": {
                        "classifier": {
                            "name": "edgecnn",
                            "backend": "litert",
                            "device": "CPU",
                            "sha256": "ab" * 32,
                        }
                    }
                }
            ),
        )
        for i in range(frames):
            study.add(session, i, payload(session, i), codec=1, timestamp_us=i, received_us=5 + i)
            study.settle(session, i, "delivered", None)
            found = [Finding("classifier", "polyps", 0.9)] if i % 2 else []
            study.add_inference(session, i, "done", inferred_ms=3.0, findings=found)
            if i % 5 == 4:
                study.commit()
        study.record_link_stats(2_000, json.dumps({"credits": 64}))
        study.stop_run(run, 3_000, json.dumps({"frames_stored": frames, "fps": 30.0}))
    return folder


def study_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "study", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def where(folder: Path, session: int, index: int) -> tuple[int, int, int]:
    db = sqlite3.connect(folder / "study.db")
    row = db.execute(
        "SELECT segment, offset, length FROM frames WHERE session = ? AND idx = ?",
        (session, index),
    ).fetchone()
    db.close()
    return row


def flip(folder: Path, segment: int, offset: int) -> None:
    path = archive.segment_path(folder / "archive", segment)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


def test_verify_passes_on_a_clean_study_and_changes_nothing(tmp_path: Path):
    study = make_study(tmp_path / "s")
    before = listing(study)
    done = study_cli("verify", study)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 20 frames in 1 session(s)")
    after = listing(study)
    after.pop("audit.log")  # the one thing a read adds: its line in the trail
    assert after == before  # no -wal, -shm or lock file made
    assert (study / "audit.log").read_text().count("\n") == 1


def test_a_flipped_frame_byte_fails_naming_the_frame(tmp_path: Path):
    study = make_study(tmp_path / "s")
    segment, offset, length = where(study, 1, 7)
    flip(study, segment, offset + length // 2)
    done = study_cli("verify", study)
    assert done.returncode == 1
    problems = [line for line in done.stdout.splitlines() if line.startswith("frame ")]
    assert problems == [
        f"frame 1:7: its bytes do not match its CRC-32C (archive/000001.bin offset {offset}, "
        f"{length} bytes)"
    ]
    report = json.loads(study_cli("verify", study, "--json").stdout)
    assert [(p["frame"], p["kind"]) for p in report["problems"]] == [("1:7", "crc")]


def test_a_flipped_header_byte_fails_naming_the_frame(tmp_path: Path):
    study = make_study(tmp_path / "s")
    segment, offset, _ = where(study, 1, 9)
    flip(study, segment, offset - archive.HEADER.size + 10)  # the record's index field
    done = study_cli("verify", study)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if not line.startswith("FAILED")]
    assert len(lines) == 1  # the damaged stretch is the frame's record, named once
    assert lines[0].startswith("frame 1:9: no sound record header before its bytes")
    assert "its bytes match its CRC-32C" in lines[0]


def test_a_record_the_database_does_not_know_fails(tmp_path: Path):
    study = make_study(tmp_path / "s")
    appender = Appender(study / "archive", 1)
    data = payload(1, 500)
    appender.append(Record(1, 500, 0, len(data), 1, 0, 0, archive.crc(data)), data)
    appender.append(Record(1, 3, 0, len(data), 1, 0, 0, archive.crc(data)), data)
    appender.sync()
    appender.close()
    done = study_cli("verify", study)
    assert done.returncode == 1
    assert "frame 1:500: its record at archive/000001.bin" in done.stdout
    assert "is not in the database" in done.stdout
    assert "frame 1:3: a second record at" in done.stdout


def test_ledger_inference_and_findings_are_checked_against_the_frames(tmp_path: Path):
    folder = tmp_path / "s"
    with Study(folder) as study:
        for i in range(4):
            study.add(0, i, payload(0, i), codec=2, timestamp_us=i, origin=f"f{i}.png")
        study.settle(0, 0, "delivered", None)
        study.settle(0, 1, "delivered", None)
        study.settle(0, 2, "lost", "undecodable")  # stored, yet said lost
        # 0:3 stored without a ledger row (a folder session is checked too)
        study.settle(0, 9, "delivered", None)  # delivered, never stored
        study.add_inference(0, 1, "failed", reason="x", findings=[Finding("detector", "p", 1)])
        study.add_inference(0, 7, "done")  # a frame that is not stored
    out = study_cli("verify", folder).stdout
    assert "frame 0:9: the ledger says delivered, but no frame is stored" in out
    assert "frame 0:2: stored, but the ledger says lost" in out
    assert "frame 0:3: stored, but not in the ledger" in out
    assert "frame 0:7: an inference row (done) for a frame that is not stored" in out
    assert "frame 0:1: 1 finding(s), but its inference outcome is failed" in out
    assert "frame 0:0" not in out


def test_rebuild_after_study_db_is_deleted(tmp_path: Path):
    study = make_study(tmp_path / "s", frames=30)
    (study / "study.db").unlink()
    with pytest.raises(StudyError, match="study rebuild"):
        Study(study)
    assert study_cli("verify", study).returncode == 2
    done = study_cli("rebuild", study)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "30 frames in 1 session(s)" in done.stdout
    assert "infers all 30 frames again" in done.stdout
    assert study_cli("verify", study).returncode == 0
    with Study(study) as reopened:
        assert [reopened.read(1, i).data for i in range(30)] == [payload(1, i) for i in range(30)]
        assert reopened.uninferred_count() == 30  # inferred again on the next run


def test_rebuild_keeps_a_damaged_database_and_names_a_bad_frame(tmp_path: Path):
    study = make_study(tmp_path / "s")
    (study / "study.db").write_bytes(b"not a database at all" * 100)
    assert "not a study database" in study_cli("show", study).stderr
    segment, offset, _ = where_in_archive(study, 1, 4)
    flip(study, segment, offset + 1)
    # Not SQLite: without a key an encrypted study's database looks the same, so only
    # the user says which (--plain: made without a key); till then nothing is changed.
    done = study_cli("rebuild", study)
    assert done.returncode == 2 and "--plain" in done.stderr.strip().splitlines()[-1]
    assert not list(study.glob("study.db.*"))
    done = study_cli("rebuild", study, "--plain")
    assert done.returncode == 1  # rebuilt, with a frame whose bytes are bad
    assert "frame 1:4: its bytes at archive/000001.bin" in done.stdout
    kept = list(study.glob("study.db.damaged-*"))
    assert [p.read_bytes() for p in kept] == [b"not a database at all" * 100]
    out = study_cli("verify", study).stdout
    assert [line.split(":")[0:2] for line in out.splitlines()[:-1]] == [["frame 1", "4"]]


def where_in_archive(study: Path, session: int, index: int) -> tuple[int, int, int]:
    for item in archive.scan(study / "archive", 1):
        if isinstance(item, archive.Scanned) and item.record.index == index:
            return item.segment, item.offset, item.record.length
    raise AssertionError("not in the archive")


def test_rebuild_of_a_sound_study_keeps_what_only_the_database_held(tmp_path: Path):
    study = make_study(tmp_path / "s")
    done = study_cli("rebuild", study)
    assert done.returncode == 0, done.stdout
    assert "from the old database (sound)" in done.stdout
    info = json.loads(study_cli("show", study, "--json").stdout)
    assert info["counts"]["inferred"] == 20
    assert info["findings"] == [{"model": "classifier", "label": "polyps", "findings": 10}]
    assert len(info["runs"]) == 1
    assert study_cli("verify", study).returncode == 0


def test_rebuild_refuses_a_study_in_use(tmp_path: Path):
    study = make_study(tmp_path / "s")
    lock = StudyLock(study)
    try:
        done = study_cli("rebuild", study)
    finally:
        lock.release()
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "in use by pid" in done.stderr


def test_export_names_bytes_and_never_overwrites(tmp_path: Path):
    study = make_study(tmp_path / "s", frames=6, session=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "3-2.jpg").write_bytes(b"someone else's")
    done = study_cli("export", study, "--frames", out, "--findings", tmp_path / "f.csv")
    assert done.returncode == 1
    assert "5 written" in done.stdout and "1 not written" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"3-{i}.jpg" for i in range(6)]
    assert (out / "3-2.jpg").read_bytes() == b"someone else's"
    for i in (0, 1, 3, 4, 5):
        assert (out / f"3-{i}.jpg").read_bytes() == payload(3, i)
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0].startswith("session,index,timestamp_us,origin,status,model,label,score")
    assert rows[2] == "3,1,1,,done,classifier,polyps,0.9,,,,"
    assert rows[1] == "3,0,0,,done,,,,,,,"  # looked at, nothing found
    again = study_cli("export", study, "--findings", tmp_path / "f.json")
    assert again.returncode == 0
    assert len(json.loads((tmp_path / "f.json").read_text())) == 6


def test_ls_lists_each_study_of_a_folder(tmp_path: Path):
    make_study(tmp_path / "a" / "study", frames=3)
    make_study(tmp_path / "b", frames=5)
    (tmp_path / "notes").mkdir()
    lock = StudyLock(tmp_path / "b")
    try:
        done = study_cli("ls", tmp_path)
    finally:
        lock.release()
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'a' / 'study'}  3 frames  1 session(s)")
    assert f"not in use  schema {schema.VERSION}" in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'b'}  5 frames") and "in use by pid" in lines[1]


def test_show_json(tmp_path: Path):
    study = make_study(tmp_path / "s")
    info = json.loads(study_cli("show", study, "--json").stdout)
    assert info["counts"]["frames"] == 20 and info["counts"]["runs"] == 1
    assert info["runs"][0]["models"]["classifier"]["sha256"] == "ab" * 32
    assert info["runs"][0]["summary"] == {"frames_stored": 20, "fps": 30.0}
    assert info["ledger"] == [{"outcome": "delivered", "reason": None, "frames": 20}]
    assert info["sessions"] == [{"session": 1, "first": 0, "last": 19, "frames": 20, "missing": 0}]
    assert info["link_stats"]["credits"] == 64
    assert info["in_use_by"] is None


@pytest.mark.parametrize("command", ["ls", "show", "verify", "export", "rebuild"])
def test_bad_input_is_one_line(tmp_path: Path, command: str):
    not_sqlite = tmp_path / "junk"
    (not_sqlite / "archive").mkdir(parents=True)
    (not_sqlite / "study.db").write_bytes(b"x" * 4096)
    newer = make_study(tmp_path / "newer", frames=2)
    db = sqlite3.connect(newer / "study.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    cases = {
        tmp_path / "missing": "no such folder",
        tmp_path: "not a study folder",
        newer: "newer capsule-edge",
    }
    if command != "rebuild":  # rebuild recovers a study.db that is not SQLite
        cases[not_sqlite] = "not a study database"
    extra = ["--frames", str(tmp_path / "x")] if command == "export" else []
    for folder, message in cases.items():
        if command == "ls" and folder != tmp_path / "missing":
            continue
        if command == "rebuild" and folder == newer:
            continue  # rebuild takes the records, whatever wrote the database
        done = study_cli(command, folder, *extra)
        assert done.returncode == 2, (folder, done.stdout, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def test_ls_names_an_unusable_study_and_goes_on(tmp_path: Path):
    (tmp_path / "a" / "archive").mkdir(parents=True)
    (tmp_path / "a" / "study.db").write_bytes(b"x" * 4096)
    make_study(tmp_path / "b", frames=2)
    lines = study_cli("ls", tmp_path).stdout.splitlines()
    assert "unusable: study.db: not a study database" in lines[0]
    assert "2 frames" in lines[1]


WRITER = """
import sys
from pathlib import Path
from edge.study.store import Study
from tests.test_study_cli import payload
study = Study(Path(sys.argv[1]))
start = int(sys.argv[2])
for i in range(start, start + 100_000):
    study.add(1, i, payload(1, i), codec=1, timestamp_us=i)
    study.settle(1, i, "delivered", None)
    if i % 5 == 2:
        study._appender.file.flush()  # a record in the archive, not yet committed
    if i % 5 == 4:
        study.commit()
        print(i, flush=True)
"""


def test_verify_passes_after_sigkills_at_random_moments(tmp_path: Path):
    folder = tmp_path / "study"
    rng = random.Random(5)
    start = 0
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stdout is not None
        for _ in range(rng.randrange(2, 40)):
            proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Study(folder) as study:  # recovery cuts what no commit holds
            stored = [i for _, i in study.frames()]
        start = max(stored) + 1 if stored else 0
    done = study_cli("verify", folder)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith(f"ok: {len(stored)} frames")


def test_verify_reads_a_study_being_written_without_disturbing_it(tmp_path: Path):
    folder = make_study(tmp_path / "s", frames=5)
    with Study(folder) as study:
        study.add(1, 100, payload(1, 100), codec=1, timestamp_us=0)
        study._appender.file.flush()  # on disk, not committed yet
        done = study_cli("verify", folder)
        study.settle(1, 100, "delivered", None)
        assert study.commit() == [(1, 100)]  # the writer goes on as if nobody looked
    assert done.returncode == 0, done.stdout
    assert "1 record(s) after the database's last frame: being written by pid" in done.stdout
    assert "note: read while pid" in done.stdout
    assert study_cli("verify", folder).stdout.startswith("ok: 6 frames")
