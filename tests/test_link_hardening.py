"""The link hardened (issue 12, points 5, 10, 20 and 21): the host against exact message
sequences, and the reference recorder against the host. Section 11 of protocol.md:
test_protocol_section11.py."""

from __future__ import annotations

import gc
import random
import resource

import pytest

from firmware_bridge.host import HostLink
from firmware_bridge.ledger import MAX_AHEAD, LedgerRangeError, Outcome, SessionLedger
from firmware_bridge.protocol import (
    ACK_RESULTS,
    HB_NEED_CLASSES,
    NO_CLASS,
    ClassList,
    Header,
    MessageType,
    Result,
    ResultStatus,
    encode,
)
from firmware_bridge.recorder import Recorder
from tests.link_messages import (
    asked,
    chunk,
    classes,
    damaged,
    frame,
    heartbeat,
    hello,
    hello_ack,
    meta,
    replies,
    requests,
    results,
)
from tests.test_host_link import frames, pump

# --- 5. A recorder reboot keeps the frames the application has not taken ------------------


def test_a_reboot_keeps_delivered_frames_for_take_and_acknowledges_them_to_nobody():
    link = HostLink()
    link.receive(hello(1) + frame(1, 0, 2) + frame(1, 1, 2) + frame(1, 2, 2))
    link.receive(chunk(1, 3, 0, 2))  # frame 3 is cut by the reboot
    replies(link)
    # The recorder reboots before the application took anything.
    link.receive(hello(2))
    replies(link)
    old = link.ledger.sessions[1]
    assert [old.outcome(i) for i in range(3)] == [Outcome.DELIVERED] * 3
    assert (old.outcome(3), old.reason(3)) == (Outcome.LOST, "recorder_reset")
    taken = [f for f in iter(link.take, None)]
    assert [(f.session, f.index) for f in taken] == [(1, 0), (1, 1), (1, 2)]
    for f in taken:
        assert f.data == bytes([f.index + 1]) * (2 * 1024 - 10)
        link.confirm(f)
    assert link.outgoing() == b""  # no ACK of session 1 goes to session 2
    # The new session is not disturbed: its frame 0 is delivered and acknowledged.
    link.receive(frame(2, 0, 1))
    (f,) = iter(link.take, None)
    link.confirm(f)
    (ack,) = [m for m in replies(link) if m.type == MessageType.ACK]
    assert ack.header.session == 2 and ack.payload[:4] == (0).to_bytes(4, "little")
    # A RESULT for a frame of the rebooted session goes nowhere.
    link.send_result(taken[0], Result(1, 0.5))
    assert link.outgoing() == b"" and link.counters["results_unsent_old_session"] == 1


# --- 10. The ledger's memory is bounded whatever a HELLO claims ----------------------------


@pytest.mark.parametrize("base", [0xFFFFFF00, 0x40000000, 0xFFFFFFFE])
def test_a_hostile_hello_base_costs_no_memory_and_the_link_still_works(base: int):
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    link = HostLink()
    link.receive(hello(9, base=base))
    assert hello_ack(replies(link)).resume == base
    # The session's frames from base on are delivered, right up to the last index.
    top = min(base + 3, 0xFFFFFFFF)
    for index in range(base, top):
        link.receive(frame(9, index, 1))
    got = [f.index for f in iter(link.take, None)]
    assert got == list(range(base, top))
    # A DROP far ahead, or a frame at NO_FRAME, grows nothing; a heartbeat far ahead is
    # taken only as far as the host's window (2 x 64 + 64 indices): what it says was sent
    # and never comes is asked for, then LOST(gap).
    window = 2 * 64 + 64
    link.receive(heartbeat(9, 0xFFFFFFFF))
    link.receive(encode(Header(MessageType.DROP, session=9, frame=0xFFFFFFFF), b"\x01"))
    link.receive(damaged(chunk(9, 0xFFFFFFFF, 0, 1)))
    for _ in range(20):  # rounds run out for whatever is open: nothing breaks
        link.receive(heartbeat(9, top))
    replies(link)
    ledger = link.ledger.sessions[9]
    assert ledger.start == base and ledger.nbytes <= 3 + window
    assert len(ledger.outcomes) <= min(top + window, 0xFFFFFFFF)
    settled = [(i, o, r) for i, o, r in ledger.settled_since(0)]
    assert [(i, o) for i, o, _ in settled[:3]] == [(i, Outcome.DELIVERED) for i in range(base, top)]
    assert {(o, r) for _, o, r in settled[3:]} <= {(Outcome.LOST, "gap")}
    # A recorder that then boots for real is served as ever.
    rec = Recorder(session=10)
    data = frames(5)
    for d in data:
        rec.capture(d)
    assert pump(rec, link) == dict(enumerate(data))
    assert 9 in link.ledger.sessions  # it settled frames: kept
    gc.collect()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20_000, f"the process grew by {grown_kib} KiB"


def test_a_stream_of_hellos_with_new_session_ids_does_not_grow_the_ledger():
    link = HostLink()
    for session in range(1, 2001):
        link.receive(hello(session, base=random.Random(session).randrange(1 << 32 - 1)))
    assert len(link.ledger.sessions) == 1  # only the current one: the others held nothing
    link.receive(hello(0xFFFF, base=0xFFFFFFFF))  # NO_FRAME is no base
    assert link.counters["bad_hello"] == 1 and link.session == 2000


def test_the_ledger_refuses_an_index_absurdly_far_ahead_and_lists_what_is_settled():
    ledger = SessionLedger(1, start=0xFFFFFF00)
    with pytest.raises(LedgerRangeError):
        ledger.settle(0xFFFFFF00 + MAX_AHEAD, Outcome.LOST, "gap")
    with pytest.raises(LedgerRangeError):
        ledger.known(0xFFFFFF00 + MAX_AHEAD + 1)
    assert ledger.nbytes == 0
    assert not ledger.settle(5, Outcome.DELIVERED)  # below start: not this host's
    ledger.settle(0xFFFFFF01, Outcome.DROPPED, "backpressure")
    assert list(ledger.settled_since(0)) == []  # 0xFFFFFF00 is still pending
    ledger.settle(0xFFFFFF00, Outcome.DELIVERED)
    ledger.settle(0xFFFFFF03, Outcome.LOST, "gap")
    assert list(ledger.settled_since(0)) == [
        (0xFFFFFF00, Outcome.DELIVERED, None),
        (0xFFFFFF01, Outcome.DROPPED, "backpressure"),
    ]
    assert list(ledger.settled_since(0xFFFFFF03)) == [(0xFFFFFF03, Outcome.LOST, "gap")]
    assert ledger.pending() == [0xFFFFFF02] and ledger.low == 0xFFFFFF02
    # The compatibility view reads as the old bytearray did, from index 0.
    assert ledger.outcomes[0xFFFFFF01] == Outcome.DROPPED and ledger.outcomes[7] == 0
    assert len(ledger.outcomes) == 0xFFFFFF04


# --- 20. Each missing piece asked for once a round; damaged resends asked for again --------


def test_a_piece_asked_for_by_a_nack_is_not_asked_again_by_the_heartbeat_ack_crossing_it():
    link = HostLink()
    link.receive(hello(1))
    replies(link)
    # Chunk 1 of frame 0 arrives damaged; the heartbeat the recorder sent before it read
    # the NACK comes in the same read.
    link.receive(
        chunk(1, 0, 0, 4)
        + damaged(chunk(1, 0, 1, 4))
        + chunk(1, 0, 2, 4)
        + chunk(1, 0, 3, 4)
        + meta(1, 0, 4)
        + heartbeat(1, 1)
    )
    assert requests(replies(link)) == [("NACK", {0: [1]}), ("ACK", {})]
    # The next messages do not ask for it again either: it is outstanding.
    link.receive(frame(1, 1, 2))
    assert asked(replies(link)) == {}
    # Its resend comes; the frame is complete and nothing more is asked.
    link.receive(chunk(1, 0, 1, 4, resend=True))
    assert asked(replies(link)) == {}
    assert [f.index for f in iter(link.take, None)] == [1, 0]


def test_a_damaged_resend_is_asked_for_again_by_the_next_message_that_shows_it_missing():
    link = HostLink()
    link.receive(hello(1) + frame(1, 0, 1))
    link.receive(chunk(1, 1, 0, 4) + damaged(chunk(1, 1, 1, 4)) + chunk(1, 1, 2, 4))
    assert requests(replies(link)) == [("NACK", {1: [1]})]
    link.receive(chunk(1, 1, 3, 4) + meta(1, 1, 4))
    assert asked(replies(link)) == {}
    # The resend is damaged too: it is asked for at the next message, not the heartbeat.
    link.receive(damaged(chunk(1, 1, 1, 4, resend=True)))
    assert asked(replies(link)) == {}  # nothing after it yet shows it missing
    link.receive(chunk(1, 2, 0, 1))
    assert requests(replies(link)) == [("NACK", {1: [1]})]
    link.receive(meta(1, 2, 1) + chunk(1, 1, 1, 4, resend=True))
    assert [f.index for f in iter(link.take, None)] == [0, 2, 1]
    assert link.counters["tx_nack"] == 2


def test_a_resend_lost_without_trace_is_asked_again_when_a_later_one_arrives():
    link = HostLink()
    link.receive(hello(1))
    data = chunk(1, 0, 0, 6) + chunk(1, 0, 2, 6) + chunk(1, 0, 4, 6) + chunk(1, 0, 5, 6)
    link.receive(data + meta(1, 0, 6))
    assert asked(replies(link)) == {0: [1, 3]}
    # The resend of chunk 1 vanishes (its header destroyed); that of chunk 3 arrives.
    link.receive(chunk(1, 0, 3, 6, resend=True))
    assert requests(replies(link)) == [("NACK", {0: [1]})]
    link.receive(chunk(1, 0, 1, 6, resend=True))
    assert [f.index for f in iter(link.take, None)] == [0]


def test_a_heartbeat_in_a_later_read_asks_once_more_and_counts_a_round():
    link = HostLink()
    link.receive(hello(1))
    link.receive(chunk(1, 0, 0, 3) + chunk(1, 0, 2, 3) + meta(1, 0, 3))
    assert asked(replies(link)) == {0: [1]}
    for round_ in range(1, 4):
        link.receive(heartbeat(1, 1))  # the resend never came: ask again, once
        assert requests(replies(link)) == [("ACK", {0: [1]})]
        assert link._open[0].nack_rounds == round_
    link.receive(chunk(1, 0, 1, 3, resend=True))
    assert link.ledger.sessions[1].outcome(0) == Outcome.DELIVERED_AFTER_RETRANSMIT


# --- 21. RESULT with a status, a class per box, class names once per session ---------------


def test_results_carry_a_status_and_boxes_a_class_and_the_names_come_after_hello_ack():
    link = HostLink(class_names=["mucosa", "polyp"], box_class_names=["polyp"], results=True)
    link.receive(hello(1) + frame(1, 0, 1) + frame(1, 1, 1))
    out = replies(link)
    assert [m.type for m in out][:3] == [
        MessageType.HELLO_ACK,
        MessageType.CLASSES,
        MessageType.CLASSES,
    ]
    ack = hello_ack(out)
    assert ack.flags & ACK_RESULTS and ack.max_frame == 4 << 20
    got = {c.kind: (c.total, c.first, c.names) for c in classes(out)}
    assert got == {0: (2, 0, ("mucosa", "polyp")), 1: (1, 0, ("polyp",))}
    first, second = iter(link.take, None)
    link.send_result(first, Result(1, 0.75, ((10, 20, 30, 40, 0.5, 0),)))
    link.send_result(second, Result.none(ResultStatus.UNDECODABLE))
    (_, r0), (_, r1) = results(replies(link))
    assert r0.status == ResultStatus.OK and r0.class_id == 1
    assert r0.boxes[0].class_id == 0 and r0.boxes[0][:4] == (10, 20, 30, 40)
    assert (r1.status, r1.class_id, r1.boxes) == (ResultStatus.UNDECODABLE, NO_CLASS, ())
    assert link.counters["tx_result_ok"] == link.counters["tx_result_undecodable"] == 1
    # Names set later go out at once; a recorder that lacks them asks in its heartbeat.
    link.set_classes(["a", "b", "c"])
    assert [c.names for c in classes(replies(link))] == [("a", "b", "c"), ()]
    link.receive(heartbeat(1, 2, flags=HB_NEED_CLASSES))
    assert len(classes(replies(link))) == 2


def test_the_reference_recorder_counts_results_by_status_and_assembles_long_class_lists():
    names = [f"class number {i:04d}" for i in range(600)]  # several CLASSES messages
    link = HostLink(class_names=names, box_class_names=["polyp"], results=True)
    rec = Recorder(session=3)
    data = frames(8)
    for d in data:
        rec.capture(d)
    statuses = list(ResultStatus) * 2

    class Answering(HostLink):
        pass

    original_take = link.take

    def take():
        f = original_take()
        if f is not None:
            status = statuses[f.index]
            result = Result(1, 0.9, ((1, 2, 3, 4, 0.8, 0),)) if status == 0 else None
            link.send_result(f, result or Result.none(status))
        return f

    link.take = take  # type: ignore[method-assign]
    assert pump(rec, link) == dict(enumerate(data))
    assert rec.host_sends_results and rec.classes_complete
    assert rec.classes[ClassList.FRAME] == names and rec.classes[ClassList.BOX] == ["polyp"]
    assert rec.class_name(ClassList.FRAME, 599) == "class number 0599"
    assert dict(rec.counters.results) == {"ok": 2, "undecodable": 2, "failed": 2, "skipped": 2}
    assert rec.counters.result_repeats == 0 and set(rec.results) == set(range(8))
    assert rec.results[0].boxes[0].class_id == 0
    assert link.counters["tx_classes"] >= 4


def test_a_version_1_recorder_is_served_in_version_1():
    link = HostLink(class_names=["a"])
    rec = Recorder(session=4, version=1)
    data = frames(4)
    for d in data:
        rec.capture(d)
    sent = []
    original_take = link.take

    def take():
        f = original_take()
        if f is not None:
            link.send_result(f, Result(0, 0.5) if f.index % 2 else Result.none(2))
            sent.append(f.index)
        return f

    link.take = take  # type: ignore[method-assign]
    assert pump(rec, link) == dict(enumerate(data))
    assert link.version == 1 and link.counters["tx_classes"] == 0
    assert set(rec.results) == {1, 3}  # v1 has no status: only findings go out
    assert link.counters["results_unsent_v1"] == 2
    link.receive(heartbeat(4, 4, version=1))
    assert {m.header.version for m in replies(link)} == {1}


def test_results_of_a_frame_without_findings_and_box_coordinates_off_the_frame():
    # Negative or huge coordinates are clamped to the u16 range, not a struct error.
    result = Result(2, 1.5, ((-3.6, 10.2, 70000, 5, 2.0),))
    again = Result.unpack(result.pack())
    assert again.boxes[0][:4] == (0, 10, 0xFFFF, 5) and again.boxes[0].score == 1.0
    assert again.boxes[0].class_id == NO_CLASS and again.confidence == 1.0
