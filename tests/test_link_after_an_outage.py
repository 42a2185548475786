"""A recorder that kept capturing while nobody heard it: its queue overflowed, it dropped
frames (RECORDER_FULL) and its DROPs were lost. Once the link is back, the host must
learn of every dropped index and let the recorder send again, however far its
``next_unsent`` has run ahead of the host's window."""

from __future__ import annotations

from firmware_bridge.host import HostLink
from firmware_bridge.ledger import Outcome
from firmware_bridge.recorder import Policy, Recorder
from firmware_bridge.stream import LinkError, StreamDecoder
from tests.test_host_link import frames


def _round(rec: Recorder, host: HostLink, decoder: StreamDecoder, got: dict[int, bytes]) -> None:
    for m in rec.next_messages() or [rec.heartbeat()]:
        host.receive(m.data)
    while (frame := host.take()) is not None:
        got[frame.index] = frame.data
        host.confirm(frame)
    for event in decoder.feed(host.outgoing()):
        if not isinstance(event, LinkError):
            rec.on_message(event)


def test_drops_far_beyond_the_hosts_window_are_learnt_and_the_link_goes_on():
    rec = Recorder(session=1, policy=Policy.WAIT)  # window 64, queue 256
    host = HostLink()  # capacity 64: a window of 192 indices
    decoder = StreamDecoder(4096)
    got: dict[int, bytes] = {}
    _round(rec, host, decoder, got)  # HELLO
    _round(rec, host, decoder, got)  # HELLO_ACK: credits
    data = frames(800)
    # The link goes dead: 600 frames captured, what the recorder sends is lost. 64 fill
    # its window, 256 its queue, the other 280 are dropped (their DROPs lost too).
    for d in data[:600]:
        rec.capture(d)
        rec.next_messages()
    dropped = set(rec.drops)
    assert dropped == set(range(320, 600))
    # The link is back (the recorder reconnects); the recorder goes on capturing.
    rec.reconnected()
    captured = 600
    for _ in range(3000):
        if captured < len(data):
            rec.capture(data[captured])
            captured += 1
        _round(rec, host, decoder, got)
        if captured == len(data) and rec.idle and not host.ledger.sessions[1].pending():
            break
    dropped = set(rec.drops)
    assert got == {i: data[i] for i in range(len(data)) if i not in dropped}
    assert rec.idle  # everything acknowledged: the recorder is not waiting for credits
    ledger = host.ledger.sessions[1]
    outcomes = {i: Outcome(o) for i, o in enumerate(ledger.outcomes)}
    assert len(outcomes) == len(data)  # every index of the session is in the ledger
    assert {i for i, o in outcomes.items() if o == Outcome.DROPPED} == dropped
    assert {ledger.reason(i) for i in dropped} == {"recorder_full"}
    assert host.counters["beyond_window"] > 0  # the case reaches past the window
