"""A recorder that stops reading must not stop the host reading: replies wait in a
bounded outbox (the overflow counted) instead of a blocking write. A pty holds about
20 KiB each way; a host blocked writing ACKs into a full one stopped reading frames, the
recorder blocked writing frames stopped reading ACKs, and both gave up (CI, issue 16)."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from firmware_bridge.host import HostLink
from firmware_bridge.outbox import Outbox, Superseded
from firmware_bridge.protocol import Ack, MessageType, Result
from firmware_bridge.stream import LinkError, StreamDecoder
from firmware_bridge.transport import Receiver, SerialTransport
from firmware_bridge.wires import PtyWire
from tests import link_messages as m

FRAMES = 3000  # their replies: about 250 kB, for a pty that holds 20 kB


@pytest.fixture
def pty():
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        os.close(fd)


def test_a_recorder_that_never_reads_replies_still_has_every_frame_taken(pty):
    master, path = pty
    link = HostLink(capacity=16384, chunk_size=m.S, results=True)
    receiver = Receiver(SerialTransport(path), link)
    receiver.outbox = Outbox(limit=8192)  # the default holds all of this test's replies
    receiver.transport.open()
    receiver.connected = True

    def recorder() -> None:  # sends, never reads: its replies pile up in the pty
        os.write(master, m.hello(1))
        for i in range(FRAMES):
            os.write(master, m.frame(1, i, 1))

    taken: set[int] = set()

    def host() -> None:  # a blocking write would stop it here, for good
        deadline = time.monotonic() + 60
        while len(taken) < FRAMES and time.monotonic() < deadline:
            for frame in receiver.poll():
                link.confirm(frame)
                link.send_result(frame, Result(1, 0.9, ((1, 2, 30, 40, 0.8, 0),)))
                taken.add(frame.index)

    threads = [threading.Thread(target=f, daemon=True) for f in (recorder, host)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert taken == set(range(FRAMES)), f"{len(taken)} of {FRAMES} frames taken"
    # What the pty could not hold waited in the outbox; past its limit ACKs (each
    # superseded by the next) were dropped and counted, never a RESULT.
    assert link.counters["tx_messages_dropped"] > FRAMES // 2
    # The recorder reads again: every RESULT is there, once, and the newest ACK.
    decoder = StreamDecoder(4096)
    heard: list = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        receiver.poll()
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            heard += [
                e for e in decoder.feed(os.read(master, 65536)) if not isinstance(e, LinkError)
            ]
            quiet_since = time.monotonic()
    results = [e.header.frame for e in heard if e.header.type == MessageType.RESULT]
    assert sorted(results) == list(range(FRAMES))
    acks = [Ack.unpack(e.payload) for e in heard if e.header.type == MessageType.ACK]
    assert acks[-1].highest == FRAMES - 1  # the newest ACK: everything stored
    assert receiver.outbox.queued == 0
    receiver.close(drain_s=0.1)


def test_the_simulated_recorder_takes_replies_in_while_its_write_waits():
    """Both ends block: the host writes 200 kB of replies before it reads; the recorder
    writes 200 kB of frames. The recorder's wire takes the replies in meanwhile."""
    wire = PtyWire(stall_s=10)
    host = os.open(wire.path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(host)
    size = 200_000
    got = bytearray()

    def blocking_host() -> None:
        view = memoryview(b"r" * size)
        while view:
            view = view[os.write(host, view) :]
        while len(got) < size:
            got.extend(os.read(host, 65536))

    other = threading.Thread(target=blocking_host, daemon=True)
    other.start()
    try:
        wire.write(b"f" * size)
        other.join(timeout=10)
        assert bytes(got) == b"f" * size
        replies = bytearray()
        while len(replies) < size and (data := wire.read(1.0)):
            replies.extend(data)
        assert bytes(replies) == b"r" * size
    finally:
        wire.close()
        os.close(host)


def test_the_outbox_drops_only_superseded_messages_never_one_half_sent_nor_the_newest():
    box = Outbox(limit=100)
    box.put(Superseded(b"a" * 60))
    assert box.send(lambda view: 10) == 10  # the wire took 10 bytes of the first ACK
    box.put(b"R" * 60)  # a RESULT: never dropped
    box.put(Superseded(b"b" * 60))
    box.put(Superseded(b"c" * 60))  # over the limit: "b" goes ("a" is begun, "c" newest)
    assert (box.dropped_messages, box.dropped_bytes, box.queued) == (1, 60, 170)
    out = bytearray()

    def wire(view: memoryview) -> int:
        out.extend(view)
        return len(view)

    box.send(wire)
    assert bytes(out) == b"a" * 50 + b"R" * 60 + b"c" * 60
    assert box.queued == 0
