"""A recorder that stops reading must not stop the host reading: replies wait in a
bounded outbox (the overflow counted) instead of a blocking write. A pty holds about
20 KiB each way; a host blocked writing ACKs into a full one stopped reading frames, the
recorder blocked writing frames stopped reading ACKs, and both gave up (CI, issue 16)."""

from __future__ import annotations

import os
import threading
import time
import tty

import pytest

from firmware_bridge.host import HostLink
from firmware_bridge.outbox import Outbox
from firmware_bridge.protocol import Result
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
    # What the pty could not hold was dropped and counted, never written blocking.
    # Bounded: the limit, plus the newest batch (one poll's replies) and a half-sent one.
    assert link.counters["tx_bytes_dropped"] > 100_000
    assert 0 < receiver.outbox.queued < 64 << 10
    receiver.close(drain_s=0.1)
    assert link.counters["tx_bytes_unsent_at_close"] > 0


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


def test_the_outbox_drops_whole_batches_past_its_limit_never_one_half_sent():
    box = Outbox(limit=100)
    box.put(b"a" * 60)
    assert box.send(lambda view: 10) == 10  # the wire took 10 bytes of the first batch
    box.put(b"b" * 60)
    box.put(b"c" * 60)  # 50 + 60 + 60 > 100: the oldest batch not begun goes
    assert (box.dropped_batches, box.dropped_bytes, box.queued) == (1, 60, 110)
    out = bytearray()

    def wire(view: memoryview) -> int:
        out.extend(view)
        return len(view)

    box.send(wire)
    assert bytes(out) == b"a" * 50 + b"c" * 60
    assert box.queued == 0
