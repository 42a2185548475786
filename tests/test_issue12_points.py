"""Points of issue 12 that no earlier test covered as the issue states them: a second
runtime on a study in use (2), the demo's own example with its defaults and a second demo
into the same --out (6, 4), a RESULT with its status from ``capsule-edge run`` for a frame
it cannot decode (21), and three rules of protocol.md section 11 no test stated (22:
META last, an unplug nobody notices, no heartbeat past a frame whose META is not out)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli.simulate import spawn_simulator
from firmware_bridge.host import HostLink
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Heartbeat, MessageType
from firmware_bridge.recorder import Recorder
from firmware_bridge.stream import LinkError, StreamDecoder
from tests.link_messages import asked, chunk, hello, meta, replies
from tests.study_runs import CLASSIFIER_ONLY, ENV, HANG_S, cli, popen
from tests.test_host_link import frames, pump

REPO = Path(__file__).resolve().parents[1]


def _jpegs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        assert cv2.imwrite(
            str(folder / f"{i:02d}.jpg"), rng.integers(0, 255, (40, 48, 3), np.uint8)
        )
    return folder


def _rows(study: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{study / 'study.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _simulator(tmp: Path, *args: str | Path) -> tuple[subprocess.Popen, Path]:
    link = tmp / "recorder.pty"
    sim, _ = spawn_simulator(
        *("--pty", str(link), "--log", str(tmp / "truth.json"), "--linger", "30"),
        *map(str, args),
        cwd=REPO,
        env=ENV,
    )
    return sim, link


def _stop_after(sim: subprocess.Popen, run: subprocess.Popen) -> None:
    """The simulator is done (everything acknowledged): Ctrl-C the runtime."""
    try:
        assert sim.wait(timeout=HANG_S) == 0, sim.stderr.read() if sim.stderr else ""
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=HANG_S)
        assert run.returncode == 0, err[-3000:]
    finally:
        for proc in (sim, run):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- 2. Two runtimes on one study folder: the second is refused ---------------------------


@pytest.mark.slow  # processes of their own
def test_2_a_second_runtime_on_a_study_in_use_is_refused_and_the_first_goes_on(tmp_path: Path):
    sim, link = _simulator(tmp_path, "--count", "300", "--size", "2000", "--fps", "0")
    study = tmp_path / "study"
    first = popen("run", "--source", f"serial://{link}", "--study", study, *CLASSIFIER_ONLY)
    assert first.stderr is not None
    while not (line := first.stderr.readline()).startswith("capsule-edge: study "):
        assert line, "the first runtime stopped before it opened its study"
    (tmp_path / "empty").mkdir()
    second = cli("run", "--source", f"dir://{tmp_path / 'empty'}", "--study", study)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [second.stderr.strip()]  # one line
    assert f"in use by pid {first.pid}" in second.stderr
    assert first.poll() is None  # the first, untouched, holds the study until stopped
    _stop_after(sim, first)
    sent = json.loads((tmp_path / "truth.json").read_text())["frames"]
    assert _rows(study, "SELECT COUNT(*) FROM frames") == [(len(sent),)] == [(300,)]


# --- 6. and 4. The demo with its defaults infers every frame; a second demo into the same
# --out is a session of its own ---------------------------------------------------------------


@pytest.mark.slow  # processes of their own
def test_6_the_demo_of_1000_frames_at_fps_0_infers_1000_and_a_second_demo_adds_a_session(
    tmp_path: Path,
):
    frames_dir, out = _jpegs(tmp_path / "frames", 40), tmp_path / "demo"
    # The command, with the default backlog (256): a quarter of the recording.
    demo = cli(
        *("demo", "--count", "1000", "--fps", "0", "--frames", frames_dir, "--out", out),
        *CLASSIFIER_ONLY,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    doc = json.loads((out / "summary.json").read_text())
    assert (doc["frames_sent"], doc["frames_stored"], doc["frames_inferred"]) == (1000,) * 3
    assert doc["frames_skipped"] == 0 and doc["frames_not_inferred"] == 0
    assert doc["study"] == str(out / "study")
    again = cli(
        *("demo", "--count", "7", "--fps", "0", "--frames", frames_dir, "--out", out),
        *CLASSIFIER_ONLY,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    sessions = _rows(out / "study", "SELECT session, COUNT(*) FROM frames GROUP BY 1 ORDER BY 1")
    assert sorted(n for _, n in sessions) == [7, 1000]  # two sessions (random ids)
    inferred = _rows(out / "study", "SELECT status, COUNT(*) FROM inference GROUP BY 1")
    assert inferred == [("done", 1007)]
    assert cli("study", "verify", out / "study").returncode == 0


# --- 21. capsule-edge run sends a RESULT with a status for every frame, the class names,
# and RESULTs whose class names the study's finding -------------------------------------


@pytest.mark.slow  # processes of their own
def test_21_the_runtime_answers_every_frame_with_a_result_and_its_status(tmp_path: Path):
    frames_dir = _jpegs(tmp_path / "frames", 9)
    (frames_dir / "00b.jpg").write_bytes(b"\xff\xd8\xff\xe0 no picture in here")
    sim, link = _simulator(
        *(tmp_path, "--count", "30", "--fps", "0", "--frames", frames_dir, "--loop")
    )
    study = tmp_path / "study"
    run = popen("run", "--source", f"serial://{link}", "--study", study, *CLASSIFIER_ONLY)
    _stop_after(sim, run)
    truth = json.loads((tmp_path / "truth.json").read_text())
    names = sorted(p.name for p in frames_dir.iterdir())
    broken = {f"1:{i}" for i in range(30) if names[i % len(names)] == "00b.jpg"}
    assert broken == {"1:1", "1:11", "1:21"}
    # One RESULT for each of the 30 frames (HELLO_ACK promised them: the simulator waited),
    # none twice, each with its frame's status.
    assert truth["result_repeats"] == {"1": 0}
    assert truth["result_status"] == {
        f"1:{i}": "undecodable" if f"1:{i}" in broken else "ok" for i in range(30)
    }
    # The class names came; each RESULT's class is the label the study recorded.
    frame_names = truth["classes"]["1"]["frame"]
    assert frame_names and truth["classes"]["1"]["box"] == []  # no detector
    labels = {
        (s, i): label
        for s, i, label in _rows(
            study, "SELECT session, idx, label FROM findings WHERE model = 'classifier'"
        )
    }
    for key, (class_id, _, boxes) in truth["results"].items():
        session, index = map(int, key.split(":"))
        if key in broken:
            assert (session, index) not in labels
        else:
            assert frame_names[class_id] == labels[(session, index)] and boxes == 0
    failed = _rows(study, "SELECT idx, reason FROM inference WHERE status = 'failed'")
    assert {f"1:{i}" for i, _ in failed} == broken  # stored, and said why not inferred


# --- 22. protocol.md section 11, the rules no other test states ---------------------------


def test_22_11_2_a_meta_before_its_chunks_asks_for_every_chunk_and_the_frame_arrives():
    link = HostLink()
    link.receive(hello(1))
    replies(link)
    link.receive(meta(1, 0, 3))
    request = replies(link)
    assert [m.type for m in request] == [MessageType.NACK]
    assert asked(request) == {0: [0, 1, 2]}
    link.receive(b"".join(chunk(1, 0, i, 3) for i in range(3)))
    taken = link.take()
    assert taken is not None and taken.index == 0 and len(taken.data) == 3 * 1024 - 10
    assert link.ledger.sessions[1].outcome(0) == Outcome.DELIVERED


def test_22_11_11_an_unplug_nobody_notices_is_recovered_by_heartbeats_and_requests():
    """A plain UART: a stretch of the stream is gone (a whole frame, the end of another
    and the META of a third) and neither side re-enters HELLO_WAIT."""
    rec, host = Recorder(session=6), HostLink()
    data = frames(12, seed=4)
    for d in data:
        rec.capture(d)
    gone = {(4, 2), (4, None), (5, 0), (5, 1), (5, 2), (5, None), (6, None)}
    first_copy: set[tuple[int, int | None]] = set()

    def unplugged(m) -> bool:
        key = (m.frame, m.chunk)
        if m.retransmit or key in first_copy or key not in gone:
            return False
        first_copy.add(key)  # the first copy is lost, the resends arrive
        return True

    got = pump(rec, host, lose=unplugged)
    assert got == dict(enumerate(data))
    assert first_copy == gone  # the stretch was lost
    ledger = host.ledger.sessions[6]
    assert [Outcome(o) for o in ledger.outcomes[4:7]] == [Outcome.DELIVERED_AFTER_RETRANSMIT] * 3
    assert host.counters["rx_hello"] == 1  # recovered without a new HELLO


def _next_unsent(rec: Recorder) -> int:
    """What the recorder's HEARTBEAT says, decoded from its bytes."""
    (message,) = StreamDecoder(4096).feed(rec.heartbeat().data)
    assert not isinstance(message, LinkError)
    return Heartbeat.unpack(message.payload).next_unsent


def test_22_11_12_the_reference_never_counts_a_frame_whose_meta_is_not_out():
    rec, host = Recorder(session=2), HostLink(capacity=1)
    host.receive(rec.hello().data)
    for m in replies(host):
        rec.on_message(m)
    rec.capture(bytes(5000))
    rec.capture(bytes(5000))
    assert _next_unsent(rec) == 0  # captured, nothing on the wire yet
    sent = rec.next_messages()  # all of frame 0: its chunks, then its META
    assert [m.type for m in sent] == [MessageType.CHUNK] * 5 + [MessageType.META]
    assert _next_unsent(rec) == 1
    assert rec.next_messages() == []  # frame 1 waits for credit (capacity 1) ...
    assert _next_unsent(rec) == 1  # ... and is not counted as sent
