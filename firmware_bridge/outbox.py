"""What the host has to send, held until the wire takes it.

A recorder that stops reading must never stop the host reading. With a blocking write it
would: the recorder, itself blocked sending frames into a full wire, waits for the host,
the host waits for the recorder, and both give up (seen on a pty, whose buffers hold
about 20 KiB each way). So replies queue here, whole batches of messages as the link
encoded them, and go out as the wire takes them. Past ``limit`` bytes the oldest batches
not yet begun (never the newest) are dropped and counted: a lost ACK makes the recorder
send that frame again, and the host, which holds it already, acknowledges it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

OUTBOX_LIMIT = 1 << 18  # 256 KiB: at 921600 baud, seconds of replies the recorder did not take


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self.queued = 0  # bytes waiting
        self.dropped_bytes = 0
        self.dropped_batches = 0
        self._batches: deque[memoryview] = deque()
        self._head_begun = False  # part of the first batch is on the wire: never drop it

    def put(self, data: bytes) -> None:
        if not data:
            return
        self._batches.append(memoryview(data))
        self.queued += len(data)
        # The oldest batch goes first, never one half sent, never the newest (the
        # latest ACK says most).
        at = 1 if self._head_begun else 0
        while self.queued > self.limit and at < len(self._batches) - 1:
            gone = self._batches[at]
            del self._batches[at]
            self.queued -= len(gone)
            self.dropped_bytes += len(gone)
            self.dropped_batches += 1

    def send(self, write: Callable[[memoryview], int]) -> int:
        """Hand ``write`` what is waiting until it takes nothing more (it returns the
        number of bytes the wire took, 0 when full); the bytes sent."""
        sent = 0
        while self._batches:
            head = self._batches[0]
            taken = write(head)
            if taken <= 0:
                break
            sent += taken
            self.queued -= taken
            if taken < len(head):
                self._batches[0] = head[taken:]
                self._head_begun = True
                break
            self._batches.popleft()
            self._head_begun = False
        return sent

    def clear(self) -> int:
        """Forget what waits (the link went down: the recorder starts again with HELLO);
        the bytes forgotten."""
        forgotten = self.queued
        self._batches.clear()
        self.queued = 0
        self._head_begun = False
        return forgotten
