"""The recorder link end to end over real ptys: the simulator (``capsule-edge simulate``)
in its own process, the host reading the pty with pyserial, faults injected by seed.

Every run ends when the simulator has nothing left to send and exits (the host has
acknowledged or given up on every frame); a deadline only guards against a hang.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from edge.cli.simulate import spawn_simulator
from firmware_bridge.host import ReceivedFrame
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Result, ResultStatus
from firmware_bridge.transport import SerialTransport
from tests.link_runs import LinkRun, run_link

pytestmark = pytest.mark.slow  # the simulator in a process of its own, on ptys


def _sent(run: LinkRun, session: int = 1) -> list[int]:
    return [i for s, i, _, _ in run.truth["frames"] if s == session]


def test_clean_link_delivers_every_frame_byte_identical(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", count=10_000)
    assert run.corrupt == 0 and run.duplicates == 0
    outcomes = run.outcomes()
    assert len(outcomes) == 10_000
    assert {o for o, _ in outcomes.values()} == {Outcome.DELIVERED}
    assert len(run.frames) == 10_000
    assert not run.link.decoder.counters.errors


def test_bit_errors_with_retransmission_lose_nothing(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--ber", "1e-5", count=300, seed=3)
    assert run.corrupt == 0
    outcomes = run.outcomes()
    assert len(outcomes) == 300
    assert {o for o, _ in outcomes.values()} <= {
        Outcome.DELIVERED,
        Outcome.DELIVERED_AFTER_RETRANSMIT,
    }
    retransmitted = sum(o == Outcome.DELIVERED_AFTER_RETRANSMIT for o, _ in outcomes.values())
    assert retransmitted == len(run.truth["damaged"])  # exactly the damaged frames were resent
    assert run.link.decoder.counters.errors["crc"] > 0


def _matches_truth(run: LinkRun) -> None:
    """Without retransmission: every frame intact or LOST, as the simulator damaged it."""
    assert run.corrupt == 0
    outcomes = run.outcomes()
    assert sorted(outcomes) == _sent(run)
    lost = {i for i, (o, _) in outcomes.items() if o == Outcome.LOST}
    delivered = {i for i, (o, _) in outcomes.items() if o == Outcome.DELIVERED}
    assert lost | delivered == set(outcomes)
    assert lost == set(run.truth["damaged"])
    assert delivered and lost  # the case tests something


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(("--ber", "1e-4"), id="ber-1e-4"),
        pytest.param(("--burst-rate", "0.05", "--burst-len", "64"), id="noise-bursts-64B"),
        pytest.param(("--drop-rate", "1e-5", "--insert-rate", "1e-5"), id="drops-insertions"),
    ],
)
def test_damage_without_retransmission_matches_ground_truth(tmp_path: Path, faults: tuple):
    run = run_link(tmp_path, "--fps", "0", *faults, count=400, size=2000, seed=5, retransmit=False)
    _matches_truth(run)
    reasons = {r for o, r in run.outcomes().values() if o == Outcome.LOST}
    assert reasons <= {"corrupt", "incomplete", "gap", "truncated"}


def test_cut_chunks_are_resent_or_lost_as_truncated(tmp_path: Path):
    resent = run_link(tmp_path / "a", "--fps", "0", "--truncate-rate", "0.02", count=200)
    assert resent.corrupt == 0
    assert {o for o, _ in resent.outcomes().values()} <= {
        Outcome.DELIVERED,
        Outcome.DELIVERED_AFTER_RETRANSMIT,
    }
    assert resent.link.decoder.counters.errors["truncated"] > 0

    lost = run_link(
        tmp_path / "b",
        "--fps",
        "0",
        "--truncate-rate",
        "0.02",
        "--seed",
        "1",
        count=200,
        retransmit=False,
    )
    outcomes = lost.outcomes()
    cut = set(lost.truth["truncated"])
    assert cut
    for index in cut:
        assert outcomes[index] == (Outcome.LOST, "truncated")
        if index + 1 not in cut and index + 1 in outcomes:
            assert outcomes[index + 1][0] == Outcome.DELIVERED  # the next frame came through


def test_duplicated_chunks_deliver_each_frame_once(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--duplicate-rate", "0.1", count=200)
    assert run.duplicates == 0 and run.corrupt == 0
    assert {o for o, _ in run.outcomes().values()} == {Outcome.DELIVERED}
    assert run.link.counters["duplicate_chunks"] == run.truth["duplicated"] > 0


def test_reordered_chunks_are_reassembled(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--reorder-rate", "0.1", count=200, retransmit=False)
    assert run.truth["reordered"] > 0 and run.corrupt == 0
    assert {o for o, _ in run.outcomes().values()} == {Outcome.DELIVERED}


def test_unplug_mid_frame_reconnects_and_resends(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--unplug-at", "40,120", count=200)
    assert run.corrupt == 0
    outcomes = run.outcomes()
    assert len(outcomes) == 200
    assert {o for o, _ in outcomes.values()} <= {
        Outcome.DELIVERED,
        Outcome.DELIVERED_AFTER_RETRANSMIT,
    }
    assert outcomes[40][0] == Outcome.DELIVERED_AFTER_RETRANSMIT
    assert run.link.counters["disconnects"] >= 2  # and one when the simulator exits
    assert run.link.counters["rx_hello"] == 3  # at start and after each replug


def test_recorder_reboot_ends_the_old_sessions_open_frames(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--reboot-at", "60", count=150)
    old = run.outcomes(1)
    assert old[60] == (Outcome.LOST, "recorder_reset")
    # Every frame the old session's ledger calls delivered reached the application.
    delivered = {i for i, (o, _) in old.items() if o == Outcome.DELIVERED}
    assert delivered == {i for s, i in run.frames if s == 1}
    assert all(o in (Outcome.DELIVERED, Outcome.LOST) for o, _ in old.values())
    assert all(r == "recorder_reset" for o, r in old.values() if o == Outcome.LOST)
    new = run.outcomes(2)
    assert new and {o for o, _ in new.values()} == {Outcome.DELIVERED}
    assert run.link.counters["recorder_resets"] == 1


def test_stalled_consumer_runs_credits_out_and_the_recorder_drops(tmp_path: Path):
    run = run_link(
        tmp_path,
        "--fps",
        "200",
        "--policy",
        "drop",
        count=120,
        size=4000,
        stall_until_dropped=True,
        capacity=8,
    )
    outcomes = run.outcomes()
    assert len(outcomes) == 120
    dropped = [i for i, (o, r) in outcomes.items() if o == Outcome.DROPPED]
    assert dropped and all(outcomes[i][1] == "backpressure" for i in dropped)
    assert {o for o, _ in outcomes.values()} <= {Outcome.DELIVERED, Outcome.DROPPED}
    assert run.corrupt == 0


def test_stalled_consumer_with_a_waiting_recorder_loses_nothing(tmp_path: Path):
    run = run_link(
        tmp_path,
        "--fps",
        "200",
        "--policy",
        "wait",
        count=120,
        size=4000,
        stall_until_no_credit=True,
        capacity=8,
    )
    assert run.credit_ran_out
    outcomes = run.outcomes()
    assert len(outcomes) == 120
    assert {o for o, _ in outcomes.values()} == {Outcome.DELIVERED}
    assert run.corrupt == 0


def test_a_recorder_that_goes_quiet_is_waited_for(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--stall-at", "10", "--stall-s", "1", count=30)
    assert {o for o, _ in run.outcomes().values()} == {Outcome.DELIVERED}
    assert len(run.frames) == 30 and run.corrupt == 0


def test_frames_of_a_video_file_arrive_as_jpeg(tmp_path: Path):
    import cv2
    import numpy as np

    video = tmp_path / "capsule.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (128, 96))
    for i in range(12):
        writer.write(np.full((96, 128, 3), 15 * i, np.uint8))
    writer.release()
    run = run_link(tmp_path, "--fps", "0", "--video", str(video), count=12, synthetic=False)
    assert len(run.frames) == 12
    for frame in run.frames.values():
        assert frame.codec == 1  # JPEG
        image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (96, 128, 3)


def test_one_read_takes_every_byte_already_waiting_in_the_pty():
    """A pty hands over about 4 KiB a read: the transport takes all that waits, so that a
    poll sees whole frames and their storage shares one commit."""
    import fcntl
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
    transport = SerialTransport(os.ttyname(slave))
    try:
        transport.open()
        sent = bytearray()
        with contextlib.suppress(BlockingIOError):  # fill the pty until it takes no more
            while len(sent) < 1 << 20:
                chunk = bytes([len(sent) // 4096 % 256]) * 4096
                sent += chunk[: os.write(master, chunk)]
        assert len(sent) > 8192
        assert transport.read() == bytes(sent)
    finally:
        transport.close()
        os.close(master)
        os.close(slave)


def _status_for(frame: ReceivedFrame) -> Result:
    status = ResultStatus(frame.index % 4)
    if status is ResultStatus.OK:
        return Result(1, 0.8, ((3, 4, 50, 60, 0.7, 0),))
    return Result.none(status)


def test_every_stored_frame_gets_exactly_one_result_with_its_status(tmp_path: Path):
    names = (["mucosa", "polyp", "blood"], ["polyp"])
    run = run_link(
        tmp_path, "--fps", "0", count=60, size=5000, results=_status_for, class_names=names
    )
    truth = run.truth
    assert len(run.frames) == 60
    # The recorder heard one RESULT for each frame, with the status the host gave it.
    assert truth["result_repeats"] == {"1": 0}
    assert truth["result_counts"] == {
        "1": {"ok": 15, "undecodable": 15, "failed": 15, "skipped": 15}
    }
    assert truth["result_status"] == {f"1:{i}": ResultStatus(i % 4).name.lower() for i in range(60)}
    assert truth["classes"] == {"1": {"frame": names[0], "box": names[1]}}


def test_bit_errors_at_1e_4_with_retransmission_lose_nothing(tmp_path: Path):
    run = run_link(tmp_path, "--fps", "0", "--ber", "1e-4", count=100, seed=4)
    assert run.corrupt == 0 and len(run.frames) == 100
    assert {o for o, _ in run.outcomes().values()} <= {
        Outcome.DELIVERED,
        Outcome.DELIVERED_AFTER_RETRANSMIT,
    }
    assert run.link.decoder.counters.errors["crc"] > 100


def test_simulate_with_nobody_on_the_pty_gives_up_after_linger(tmp_path: Path):
    """Nobody opens the pty: the simulator must exit, non-zero, with one line."""
    started = time.monotonic()
    proc, address = spawn_simulator(
        *("--pty", str(tmp_path / "tty"), "--count", "5", "--linger", "1.5"),
        *("--log", str(tmp_path / "truth.json")),
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no reply from the host for 1.5 s" in lines[0], err
    assert "HELLO is unanswered" in lines[0]
    assert address == str(tmp_path / "tty") and not out.strip()
    assert 1.5 <= elapsed < 25
    assert (
        json.loads((tmp_path / "truth.json").read_text())["gave_up"]
        == lines[0].split("simulate: ")[1]
    )
