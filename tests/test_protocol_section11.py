"""docs/protocol.md section 11, each point fixed or made normative: the host against exact
message sequences, and the reference recorder against the host."""

from __future__ import annotations

from firmware_bridge.host import HostLink
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import (
    DropReason,
    Header,
    Hello,
    MessageType,
    encode,
)
from firmware_bridge.recorder import Recorder
from tests.link_messages import (
    asked,
    chunk,
    damaged,
    frame,
    heartbeat,
    hello,
    hello_ack,
    meta,
    replies,
)
from tests.test_host_link import frames, pump

# --- protocol.md section 11, each point fixed or made normative ----------------------------


def test_11_1_every_ack_and_nack_fits_the_recorders_4096_byte_buffer():
    link = HostLink(chunk_size=1024, capacity=64, max_frame=8 << 20)
    link.receive(hello(1))
    replies(link)
    sizes = []
    # Forty frames of 4096 chunks (513-byte bitmaps), each with its even chunks missing.
    for index in range(40):
        link.receive(b"".join(chunk(1, index, i, 4096) for i in range(1, 4096, 97)))
        link.receive(meta(1, index, 4096))
        sizes += [len(m.payload) for m in replies(link)]
    link.receive(heartbeat(1, 40))
    sizes += [len(m.payload) for m in replies(link)]
    assert max(sizes) <= 4022


def test_11_3_a_smaller_chunk_size_after_a_reconnect_chunks_the_window_afresh():
    rec = Recorder(session=5, max_chunk=4096)
    host = HostLink(chunk_size=4096)
    data = frames(3)
    for d in data:
        rec.capture(d)
    for m in [rec.hello()]:
        host.receive(m.data)
    for e in replies(host):
        rec.on_message(e)
    first = rec.next_messages()  # frame 0 goes in one 4096-byte chunk ... cut
    host.receive(first[0].data if len(first) > 1 else b"")
    # The recorder reconnects and offers smaller chunks (say, another UART adapter).
    rec.max_chunk = 1024
    rec.reconnected()
    got = pump(rec, host)
    assert got == dict(enumerate(data))
    assert host.counters["oversize_chunks"] == host.counters["bad_chunk_numbers"] == 0
    assert host.negotiated_chunk == 1024


def test_11_4_max_chunk_zero_takes_the_hosts_chunk_size():
    rec = Recorder(session=6, max_chunk=0)
    host = HostLink(chunk_size=2048)
    data = frames(3)
    for d in data:
        rec.capture(d)
    assert pump(rec, host) == dict(enumerate(data))
    assert rec.chunk_size == 2048 and host.counters["rx_hello"] == 1


def test_11_7_a_damaged_copy_of_a_settled_frame_opens_nothing():
    link = HostLink()
    link.receive(hello(1) + chunk(1, 0, 0, 2) + frame(1, 1, 2))  # frame 0 still open
    assert asked(replies(link)) == {0: [1, 2]}
    link.receive(damaged(chunk(1, 1, 1, 2, resend=True)))  # a stale copy of frame 1
    assert link.status()["open_frames"] == 1 and link.counters["damaged_settled"] == 1
    link.receive(chunk(1, 0, 1, 2, resend=True) + meta(1, 0, 2, resend=True) + frame(1, 2, 1))
    assert asked(replies(link)) == {}
    assert link.status()["open_frames"] == 0


def test_11_9_a_frame_beyond_the_hosts_max_frame_is_dropped_by_the_recorder():
    rec = Recorder(session=7)
    host = HostLink(max_frame=5000)
    sizes = [3000, 9000, 3000]
    for size in sizes:
        rec.capture(bytes(size))
    got = pump(rec, host)
    assert sorted(got) == [0, 2]
    ledger = host.ledger.sessions[7]
    assert (ledger.outcome(1), ledger.reason(1)) == (Outcome.DROPPED, "too_large")
    assert rec.drops == {1: DropReason.TOO_LARGE}
    assert host.counters["frame_too_large"] == 0


def test_11_10_the_host_answers_every_heartbeat_and_says_how_long_the_recorder_was_silent():
    now = [100.0]
    link = HostLink(clock=lambda: now[0])
    assert link.status()["silent_s"] is None
    link.receive(hello(1))
    replies(link)
    for _ in range(5):
        link.receive(heartbeat(1, 0))
        assert [m.type for m in replies(link)] == [MessageType.ACK]
    now[0] += 7.5
    assert link.status()["silent_s"] == 7.5


def test_hello_with_other_fields_and_a_reserved_capability_bit_is_accepted():
    link = HostLink()
    payload = Hello(1024, 3, "x", 0x8001, 0, 99).pack()
    link.receive(encode(Header(MessageType.HELLO, session=5), payload))
    assert hello_ack(replies(link)).resume == 0 and link.session == 5


def test_a_version_1_recorder_unknown_to_the_host_is_asked_in_version_1_to_say_hello():
    link = HostLink()
    link.receive(heartbeat(8, 3, version=1))
    (reply,) = replies(link)
    assert (reply.type, reply.header.version, reply.header.session) == (
        MessageType.HEARTBEAT,
        1,
        0,
    )


def test_the_reference_recorder_serves_a_request_once_however_often_it_is_made():
    rec = Recorder(session=2)
    link = HostLink()
    rec.capture(bytes(3000))
    link.receive(rec.hello().data)
    for m in replies(link):
        rec.on_message(m)
    sent = rec.next_messages()  # three chunks and the META
    link.receive(b"".join(m.data for m in sent[:1] + sent[2:]))  # chunk 1 lost
    nack = replies(link)
    assert asked(nack) == {0: [1]}
    for m in nack + nack:  # the same request twice (a NACK and an ACK crossing)
        rec.on_message(m)
    resent = rec.next_messages() + rec.next_messages()
    assert [(m.type, m.chunk, m.retransmit) for m in resent] == [(MessageType.CHUNK, 1, True)]
    assert rec.counters.requests_ignored == 1
