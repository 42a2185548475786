"""The host and recorder state machines against each other in memory: the cases that
need no line faults, only a particular sequence of events."""

from __future__ import annotations

import random
from collections.abc import Callable

from firmware_bridge.host import HostLink
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import (
    Header,
    Hello,
    MessageType,
    encode,
)
from firmware_bridge.recorder import Outgoing, Policy, Recorder
from firmware_bridge.stream import LinkError, StreamDecoder


def pump(
    rec: Recorder,
    host: HostLink,
    rounds: int = 2000,
    lose: Callable[[Outgoing], bool] = lambda m: False,
) -> dict[int, bytes]:
    """Run both ends until the recorder has nothing left; ``lose`` drops messages."""
    decoder = StreamDecoder(4096)
    got: dict[int, bytes] = {}
    for _ in range(rounds):
        messages = rec.next_messages() or [rec.heartbeat()]
        for m in messages:
            if not lose(m):
                host.receive(m.data)
        while (frame := host.take()) is not None:
            got[frame.index] = frame.data
            host.confirm(frame)
        for event in decoder.feed(host.outgoing()):
            if not isinstance(event, LinkError):
                rec.on_message(event)
        ledger = host.ledger.sessions.get(rec.session)
        settled = ledger is not None and not ledger.pending()
        if rec.idle and not rec.needs_hello and settled:
            break
    return got


def frames(n: int, seed: int = 0) -> list[bytes]:
    return [random.Random(seed * 1000 + i).randbytes(3000) for i in range(n)]


def test_a_restarted_host_picks_up_where_the_recorder_stands():
    rec = Recorder(session=5)
    data = frames(20)
    for d in data[:10]:
        rec.capture(d)
    first = HostLink()
    assert pump(rec, first) == dict(enumerate(data[:10]))
    for d in data[10:]:
        rec.capture(d)
    second = HostLink()  # a new process: it knows nothing of session 5
    got = pump(rec, second)
    assert got == {i: data[i] for i in range(10, 20)}
    ledger = second.ledger.sessions[5]
    # What the recorder sent before it was recognised goes again, marked as resent.
    assert {Outcome(o) for o in ledger.outcomes[10:]} <= {
        Outcome.DELIVERED,
        Outcome.DELIVERED_AFTER_RETRANSMIT,
    }
    assert len(ledger.outcomes) == 20 and not ledger.pending()
    assert second.counters["no_session"] >= 1 and second.counters["rx_hello"] == 1


def test_a_lost_drop_is_said_again():
    rec = Recorder(session=3, policy=Policy.DROP)
    host = HostLink()
    data = frames(6)
    # Before the host has granted credits, a captured frame is dropped at once.
    rec.capture(data[0])
    assert rec.drops == {0: rec.drops[0]}
    for d in data[1:]:
        rec.capture(d)
    first_drop = [True]

    def lose_first_drop(m: Outgoing) -> bool:
        if m.type == MessageType.DROP and first_drop[0]:
            first_drop[0] = False
            return True
        return False

    pump(rec, host, lose=lose_first_drop)
    ledger = host.ledger.sessions[3]
    assert ledger.outcome(0) == Outcome.DROPPED and ledger.reasons[0] == "backpressure"
    assert not ledger.pending()


def test_unknown_version_or_incompatible_flag_delivers_nothing():
    host = HostLink()
    hello = Hello(1024, 64, "future recorder").pack()
    host.receive(encode(Header(MessageType.HELLO, session=9, version=3), hello))
    host.receive(encode(Header(MessageType.HELLO, session=9, incompat=0x40), hello))
    chunk = Header(MessageType.CHUNK, session=9, frame=0, chunk=0, chunks=1, incompat=0x40)
    host.receive(encode(chunk, b"pixels"))
    assert host.session is None and host.take() is None
    assert host.counters["error_version"] == 1 and host.counters["error_incompat"] == 2
    assert any("protocol version 3" in e for e in host.errors)
    assert any("unknown incompatible flags 0x40" in e for e in host.errors)


def test_without_retransmission_on_either_end_frames_are_not_asked_for_again():
    rec = Recorder(session=4, retransmit=False)
    host = HostLink(retransmit=True)  # offers it, but the recorder does not do it
    data = frames(8)
    for d in data:
        rec.capture(d)
    got = pump(rec, host, lose=lambda m: m.frame == 3 and m.chunk == 0)
    assert set(got) == set(range(8)) - {3}
    ledger = host.ledger.sessions[4]
    assert ledger.outcome(3) == Outcome.LOST and ledger.reasons[3] == "incomplete"
    assert host.counters["tx_nack"] == 0
