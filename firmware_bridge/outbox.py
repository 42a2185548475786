"""What the host has to send, held until the wire takes it.

A recorder that stops reading must never stop the host reading. With a blocking write it
would: the recorder, itself blocked sending frames into a full wire, waits for the host,
the host waits for the recorder, and both give up (seen on a pty, whose buffers hold
about 20 KiB each way). So replies queue here, whole batches of messages as the link
encoded them, and go out as the wire takes them. Past ``limit`` bytes the oldest
messages that a later one supersedes (``Superseded``: ACK, NACK, the host's HEARTBEAT)
are dropped and counted, never one half sent and never the newest: an ACK is cumulative,
and a frame whose ACK never arrives is sent again and acknowledged again. A RESULT,
ALERT, HELLO_ACK or CLASSES is never dropped; they are few (one RESULT a frame, and the
recorder sends no more frames than its window while nothing is acknowledged).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

OUTBOX_LIMIT = 1 << 18  # 256 KiB: at 921600 baud, seconds of replies the recorder did not take


class Superseded(bytes):
    """An encoded message that a later one of its kind makes redundant (an ACK)."""


class _Queued:
    __slots__ = ("data", "droppable")

    def __init__(self, data: memoryview, droppable: bool) -> None:
        self.data, self.droppable = data, droppable


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self.queued = 0  # bytes waiting
        self.dropped_bytes = 0
        self.dropped_messages = 0
        self._messages: deque[_Queued] = deque()
        self._head_begun = False  # part of the first message is on the wire: never drop it

    def put(self, data: bytes) -> None:
        """Queue one message (or bytes to send as they are: never dropped)."""
        if not data:
            return
        self._messages.append(_Queued(memoryview(data), isinstance(data, Superseded)))
        self.queued += len(data)
        if self.queued > self.limit:
            self._drop()

    def _drop(self) -> None:
        newest = max((i for i, m in enumerate(self._messages) if m.droppable), default=-1)
        at = 1 if self._head_begun else 0
        while self.queued > self.limit and at < newest:
            if not self._messages[at].droppable:
                at += 1
                continue
            gone = self._messages[at].data
            del self._messages[at]
            newest -= 1
            self.queued -= len(gone)
            self.dropped_bytes += len(gone)
            self.dropped_messages += 1

    def send(self, write: Callable[[memoryview], int]) -> int:
        """Hand ``write`` what is waiting until it takes nothing more (it returns the
        number of bytes the wire took, 0 when full); the bytes sent."""
        sent = 0
        while self._messages:
            head = self._messages[0]
            taken = write(head.data)
            if taken <= 0:
                break
            sent += taken
            self.queued -= taken
            if taken < len(head.data):
                head.data = head.data[taken:]
                self._head_begun = True
                break
            self._messages.popleft()
            self._head_begun = False
        return sent

    def clear(self) -> int:
        """Forget what waits (the link went down: the recorder starts again with HELLO);
        the bytes forgotten."""
        forgotten = self.queued
        self._messages.clear()
        self.queued = 0
        self._head_begun = False
        return forgotten
