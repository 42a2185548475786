"""The issue's "Done when": ``capsule-edge study verify`` passes on a link study after
SIGKILLs, a recorder reboot mid-frame, a full disk and bit errors, and fails naming the
frame after one archive byte is flipped. Every study is also checked for content: the
frames verify counts are those the simulator's ground truth says were delivered, each
byte-identical (exported by ``study export`` and compared with the truth's CRC-32C).

The recorder simulator and the runtime run as their own processes on a real pty; a run
ends when the simulator exits (everything acknowledged, or it gave up); a watchdog only
guards against a hang.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.study_runs import (
    HANG_S,
    check_content,
    cli,
    finish_study,
    read_ledger,
    read_truth,
    start_runtime,
    start_simulator,
    verify_json,
    watchdog,
    write_frames,
)

pytestmark = pytest.mark.slow  # the simulator, the runtime and capsule-edge study as processes
AFTER_LAST = "left by a stop before its commit"  # what verify says of a kill's tail


def test_verify_passes_after_ten_sigkills_during_a_2000_frame_link_study(tmp_path: Path):
    frames = write_frames(tmp_path / "frames")
    # Between kills the recorder hears nothing while verify runs and the next runtime
    # loads its model: 30 s, not 10 s, on a loaded 2-core machine.
    sim, link = start_simulator(
        tmp_path, "--count", "2000", "--frames", frames, "--loop", "--linger", "30"
    )
    study = tmp_path / "study"
    rng = random.Random(12)
    killed_while_streaming = 0
    with watchdog(sim):
        for _ in range(10):
            run = start_runtime(link, study, "--jsonl")
            assert run.stdout is not None
            with watchdog(run):
                # Kill after a random number of inferred frames: mid-frame, mid-commit,
                # mid-ACK, anywhere.
                for _ in range(rng.randrange(1, 60)):
                    assert run.stdout.readline(), run.stderr.read() if run.stderr else ""
                killed_while_streaming += sim.poll() is None
                run.send_signal(signal.SIGKILL)
                run.wait()
            # What a kill leaves: the committed frames, sound, at most a tail of records
            # no commit holds (never acknowledged: a note, the next run cuts them), and
            # frames stored after their session's last ledger row (settled out of order:
            # never acknowledged either; the resend gives them their row).
            report = verify_json(study)
            last_row = max((i for _, i in read_ledger(study)), default=-1)
            for problem in report["problems"]:
                assert problem["message"].endswith("stored, but not in the ledger"), problem
                assert problem["index"] > last_row, problem
        run = start_runtime(link, study)
        with watchdog(run):
            finish_study(sim, run)
    assert killed_while_streaming == 10  # every kill hit the link study, not its end
    truth, sent = read_truth(tmp_path)
    assert len(sent) == 2000
    # While no runtime listens the recorder's queue fills and it drops what it captures
    # (DROP, RECORDER_FULL); everything else is stored.
    dropped = {tuple(map(int, k.split(":"))): r for k, r in truth["dropped"].items()}
    delivered = {k: crc for k, crc in sent.items() if k not in dropped}
    report = check_content(study, tmp_path, delivered)
    assert report["sessions"] == 1
    # The ledger accounts for every index up to the last frame stored: delivered, or
    # dropped as the recorder said (a DROP lost with a killed runtime is asked for again).
    ledger = read_ledger(study)
    last = max(i for _, i in delivered)
    assert {(1, i) for i in range(last + 1)} <= set(ledger)
    for key, (outcome, reason) in ledger.items():
        if key in dropped:
            assert (outcome, reason) == ("dropped", dropped[key])
        else:
            assert outcome in ("delivered", "delivered_after_retransmit") and key in delivered


# --- (b) a recorder reboot in the middle of a frame ---------------------------------------


def test_verify_passes_after_a_recorder_reboot_mid_frame(tmp_path: Path):
    sim, link = start_simulator(tmp_path, "--count", "400", "--size", "3000", "--reboot-at", "150")
    study = tmp_path / "study"
    run = start_runtime(link, study)
    with watchdog(sim, run):
        finish_study(sim, run)
    truth, sent = read_truth(tmp_path)
    assert truth["sessions"] == [1, 2]
    old = {i for s, i in sent if s == 1}
    new = {k: crc for k, crc in sent.items() if k[0] == 2}
    # Session 1 is stored up to the frame the reboot cut; what it had captured after
    # that died with its RAM. Session 2 is stored whole.
    delivered = {**{(1, i): sent[(1, i)] for i in range(150)}, **new}
    assert max(old) > 150 and len(new) == 400 - len(old)
    report = check_content(study, tmp_path, delivered)
    assert report["sessions"] == 2
    ledger = read_ledger(study)
    assert ledger[(1, 150)] == ("lost", "recorder_reset")
    # The old session's ledger never says delivered for a frame that is not stored.
    for (session, index), (outcome, reason) in ledger.items():
        if outcome.startswith("delivered"):
            assert (session, index) in delivered
        else:
            assert (session, outcome, reason) == (1, "lost", "recorder_reset")


# --- (c) a full disk -----------------------------------------------------------------------


def test_verify_passes_after_a_full_disk_and_the_resumed_study_loses_nothing(
    tmp_path: Path, small_disk: Path
):
    # 400 frames of 16 kB: 6.4 MB for a 3 MiB disk. No reserve: the disk really fills
    # (as when something else fills it faster than the runtime looks, once a second).
    # The recorder waits for the second runtime while the first drains, is checked and
    # moved (its drain alone may take drain_s, 10 s): 30 s, not the default 10 s.
    sim, link = start_simulator(tmp_path, "--count", "400", "--size", "16000", "--linger", "30")
    study = small_disk / "study"
    no_reserve = tmp_path / "no-reserve.toml"
    no_reserve.write_text("[storage]\nreserve_mb = 0\n")
    with watchdog(sim):
        run = start_runtime(link, study, "--config", str(no_reserve))
        with watchdog(run):
            _, err = run.communicate(timeout=HANG_S)
        assert run.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert "cannot store frames" in last and ("disk is full" in last or "No space" in last)
        assert "Traceback" not in err
        report = verify_json(study)  # as the full disk left it
        assert report["ok"], report["problems"][:5]
        assert 0 < report["frames"] < 400
        # Room again (the study moves to a bigger disk): the recorder, told of nothing
        # the study could not store, sends it all again.
        moved = tmp_path / "study"
        shutil.copytree(study, moved)
        shutil.rmtree(study)
        run = start_runtime(link, moved)
        with watchdog(run):
            finish_study(sim, run)
    _, sent = read_truth(tmp_path)
    assert len(sent) == 400
    check_content(moved, tmp_path, sent)
    assert {o for o, _ in read_ledger(moved).values()} <= {
        "delivered",
        "delivered_after_retransmit",
    }


# --- (d) bit errors at 1e-4, and (e) one flipped archive byte ----------------------------


@pytest.fixture(scope="module")
def ber_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A study of 300 frames received over a link with a bit-error rate of 1e-4."""
    tmp = tmp_path_factory.mktemp("ber")
    sim, link = start_simulator(
        tmp, "--count", "300", "--size", "3000", "--ber", "1e-4", "--seed", "4"
    )
    study = tmp / "study"
    run = start_runtime(link, study)
    with watchdog(sim, run):
        finish_study(sim, run)
    truth, sent = read_truth(tmp)
    return study, truth, sent


def test_verify_passes_after_bit_errors_at_1e_4(ber_study, tmp_path: Path):
    study, truth, sent = ber_study
    assert len(sent) == 300 and truth["damaged"]  # the line did damage frames
    check_content(study, tmp_path, sent)
    outcomes = [o for o, _ in read_ledger(study).values()]
    assert set(outcomes) <= {"delivered", "delivered_after_retransmit"}
    assert outcomes.count("delivered_after_retransmit") >= len(truth["damaged"]) // 2


def test_verify_fails_naming_the_frame_after_one_archive_byte_is_flipped(ber_study, tmp_path: Path):
    study = tmp_path / "study"
    shutil.copytree(ber_study[0], study)
    db = sqlite3.connect(study / "study.db")
    segment, offset, length = db.execute(
        "SELECT segment, offset, length FROM frames WHERE session = 1 AND idx = 123"
    ).fetchone()
    db.close()
    with open(study / "archive" / f"{segment:06d}.bin", "r+b") as f:
        f.seek(offset + length // 3)
        byte = f.read(1)
        f.seek(offset + length // 3)
        f.write(bytes([byte[0] ^ 0x10]))
    done = cli("study", "verify", study)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("frame 1:123: its bytes do not match its CRC-32C")
    report = verify_json(study)
    assert [(p["frame"], p["kind"]) for p in report["problems"]] == [("1:123", "crc")]
    assert report["frames"] == 300


# --- what verify takes as a stop's tail is what the next run cuts -------------------------


def _tail_study(folder: Path, tail: str) -> None:
    """A study of 5 committed frames, then, after its last frame, ``tail``."""
    from edge.study import archive
    from edge.study.store import MAX_COMMIT_FRAMES, Study

    with Study(folder) as study:
        for i in range(5):
            study.add(1, i, b"frame %d" % i, codec=1, timestamp_us=i)
            study.settle(1, i, "delivered", None)
    appender = archive.Appender(folder / "archive", 1)
    records = {"torn": 2, "one commit": MAX_COMMIT_FRAMES, "more": MAX_COMMIT_FRAMES + 1}
    for i in range(5, 5 + records.get(tail, 1)):
        data = b"uncommitted %d" % i
        appender.append(archive.Record(1, i, i, len(data), 1, 0, 0, archive.crc(data)), data)
    if tail == "duplicate":
        data = b"frame 2"
        appender.append(archive.Record(1, 2, 2, len(data), 1, 0, 0, archive.crc(data)), data)
    if tail == "damage, then a record":
        appender.file.write(b"\x00" * 64)
        data = b"uncommitted 9"
        appender.append(archive.Record(1, 9, 9, len(data), 1, 0, 0, archive.crc(data)), data)
    if tail == "torn":
        data = b"a frame cut short by the disk"
        head = archive.Record(1, 99, 0, len(data), 1, 0, 0, archive.crc(data)).header()
        appender.file.write(head + data[:5])
    appender.sync()
    appender.close()


@pytest.mark.parametrize(
    ("tail", "cut"),
    [
        ("torn", True),
        ("one commit", True),
        ("more", False),  # more than one commit holds: the database is older
        ("duplicate", False),  # a frame the database has, again
        ("damage, then a record", False),
    ],
)
def test_verify_passes_on_a_tail_exactly_when_the_next_run_cuts_it(
    tmp_path: Path, tail: str, cut: bool
):
    from edge.study.errors import StudyError
    from edge.study.store import Study

    folder = tmp_path / "study"
    _tail_study(folder, tail)
    report = verify_json(folder)
    assert report["ok"] is cut, report["problems"][:3]
    assert report["frames"] == 5
    if cut:
        assert [n for n in report["notes"] if AFTER_LAST in n]
        Study(folder).close()  # the next run cuts it ...
        after = verify_json(folder)
        assert after["ok"] and after["notes"] == [] and after["frames"] == 5  # ... all of it
    else:
        with pytest.raises(StudyError, match="nothing was changed"):
            Study(folder)
