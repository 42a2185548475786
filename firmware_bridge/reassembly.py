"""The host's per-frame state: the pieces of a frame being reassembled, and which
missing pieces it has asked the recorder for (docs/protocol.md section 6.7).

A *piece* is a CHUNK (its index) or the META (index ``chunks``); ``WHOLE`` stands for a
frame asked for whole (nothing of it arrived). Each piece is asked for once, and again
only when the request is known to have gone unanswered:

- a copy of it arrived damaged (its header sound), or
- a piece asked for *later* arrived (a recorder serves requests in the order asked, so
  this one was lost on the way), or
- a HEARTBEAT arrived in a later read than the request (the recorder heartbeats only
  when it has sent everything it was asked for).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

WHOLE = -1  # the piece that stands for "the whole frame"


@dataclass
class OpenFrame:
    chunks: int = 0  # 0: not known yet
    parts: dict[int, bytes] = field(default_factory=dict)
    meta: object | None = None  # protocol.Meta
    timestamp_us: int = 0
    codec: int = 0
    retransmitted: bool = False
    damage: str | None = None  # the worst thing seen happen to it
    nack_rounds: int = 0  # heartbeat rounds (and frame-CRC re-requests) it was asked in
    size: int = 0  # payload bytes held
    contiguous: int = 0  # every chunk below this index is held

    def add(self, chunk: int, payload: bytes) -> None:
        self.parts[chunk] = payload
        self.size += len(payload)
        while self.contiguous in self.parts:
            self.contiguous += 1

    def clear(self) -> None:
        self.parts.clear()
        self.meta = None
        self.size = self.contiguous = 0

    @property
    def complete(self) -> bool:
        return bool(self.chunks) and self.meta is not None and self.contiguous >= self.chunks

    def missing(self, below: int | None = None) -> list[int]:
        """Missing pieces below ``below`` (default: all); piece ``chunks`` is the META."""
        if not self.chunks:
            return []
        end = self.chunks if below is None else min(below, self.chunks)
        gone = [i for i in range(self.contiguous, end) if i not in self.parts]
        meta_wanted = self.meta is None and (below is None or below > self.chunks)
        return gone + ([self.chunks] if meta_wanted else [])

    @property
    def missing_count(self) -> int:
        return self.chunks + 1 - len(self.parts) - (self.meta is not None) if self.chunks else 0

    def has(self, piece: int) -> bool:
        return piece in self.parts if piece < self.chunks else self.meta is not None


class Asks:
    """The requests still outstanding, in the order they were made."""

    def __init__(self) -> None:
        self.batch = 0  # reads (HostLink.receive calls) so far
        self._order = 0
        # (frame, piece) -> (order, batch), in ask order: a repeated ask moves to the end
        self._asked: dict[tuple[int, int], tuple[int, int]] = {}
        self._per_frame: Counter[int] = Counter()
        self.overdue: set[tuple[int, int]] = set()  # unanswered: to be asked again

    def __len__(self) -> int:
        return len(self._asked)

    def ask(self, frame: int, piece: int) -> None:
        key = (frame, piece)
        if self._asked.pop(key, None) is None:
            self._per_frame[frame] += 1
        self._order += 1
        self._asked[key] = (self._order, self.batch)
        self.overdue.discard(key)

    def count(self, frame: int) -> int:
        """Requests outstanding for pieces of ``frame``."""
        return self._per_frame.get(frame, 0)

    def outstanding(self, frame: int, piece: int) -> bool:
        return (frame, piece) in self._asked

    def in_flight(self, frame: int, piece: int) -> bool:
        """Asked while reading the bytes now being read: the recorder cannot have seen
        the request before it sent them."""
        stamp = self._asked.get((frame, piece))
        return stamp is not None and stamp[1] == self.batch

    def answered(self, frame: int, piece: int) -> bool:
        """A copy of the piece arrived, sound or damaged. Every request made before its
        own and still outstanding went unanswered: those become overdue. True if any did."""
        stamp = self._pop((frame, piece))
        if stamp is None:
            return False
        found = False
        for key, (order, _) in list(self._asked.items()):
            if order >= stamp[0]:
                break
            self._pop(key)
            self.overdue.add(key)
            found = True
        return found

    def heartbeat(self) -> None:
        """A HEARTBEAT: every request made in an earlier read has been served."""
        for key, (_, batch) in list(self._asked.items()):
            if batch == self.batch:
                break
            self._pop(key)

    def forget(self, frame: int) -> None:
        """The frame is settled (or starts afresh): nothing of it is wanted any more."""
        if self._per_frame.get(frame):
            for key in [k for k in self._asked if k[0] == frame]:
                self._pop(key)
        if self.overdue:
            self.overdue = {k for k in self.overdue if k[0] != frame}

    def clear(self) -> None:
        self._asked.clear()
        self._per_frame.clear()
        self.overdue.clear()

    def _pop(self, key: tuple[int, int]) -> tuple[int, int] | None:
        stamp = self._asked.pop(key, None)
        if stamp is not None:
            self._per_frame[key[0]] -= 1
            if not self._per_frame[key[0]]:
                del self._per_frame[key[0]]
        return stamp
