"""Where every frame index ended: the link's account of a study.

Every index a recorder session used ends in exactly one outcome. One byte per frame
(100,000 frames: 100 kB), kept from the session's ``start`` on; reasons are kept only
for frames that did not arrive.

Memory is bounded whatever a recorder claims: a session that starts at index
0xFFFFFF00 (a HELLO's ``base``) costs nothing for the indices below it, and an index
more than ``MAX_AHEAD`` beyond the lowest unsettled one is refused (``LedgerRangeError``)
rather than grown into. The ledger grows by one byte per index actually settled.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import overload

# No sound host names an index this far beyond the lowest unsettled one: the host's own
# window (docs/protocol.md section 9) is 2 x capacity + 64 <= 131,134 indices.
MAX_AHEAD = 1 << 20


class Outcome(enum.IntEnum):
    PENDING = 0
    DELIVERED = 1
    DELIVERED_AFTER_RETRANSMIT = 2
    DROPPED = 3  # the recorder said it will never send it (DROP)
    LOST = 4  # the host gave up on it


class LostReason(enum.Enum):
    CORRUPT = "corrupt"  # its bytes arrived damaged (CRC) and were not resent
    TRUNCATED = "truncated"  # the stream was cut inside it
    GAP = "gap"  # nothing of it arrived
    INCOMPLETE = "incomplete"  # some chunks never arrived
    DISCONNECT = "disconnect"  # the link went down while it was open
    RECORDER_RESET = "recorder_reset"  # the recorder rebooted (new session) before it ended
    FRAME_CRC = "frame_crc"  # reassembled, but the whole-frame CRC-32C did not match


class LedgerRangeError(ValueError):
    """An index the ledger will not grow to (absurdly far ahead of what is settled)."""


class _Outcomes(Sequence[int]):
    """The outcome codes indexed from 0, as the ledger's ``outcomes`` bytearray was
    before it started at ``start``: indices below ``start`` read as PENDING (0). Kept
    for callers that walk ``range(start, len(outcomes))``; new code uses
    ``SessionLedger.settled_since``."""

    def __init__(self, ledger: SessionLedger) -> None:
        self._ledger = ledger

    def __len__(self) -> int:
        return self._ledger.end

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> bytes: ...
    def __getitem__(self, index: int | slice) -> int | bytes:
        ledger = self._ledger
        if isinstance(index, slice):
            return bytes(self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("ledger index out of range")
        return ledger._buf[index - ledger.start] if index >= ledger.start else 0

    def __iter__(self) -> Iterator[int]:
        ledger = self._ledger
        yield from (0 for _ in range(ledger.start)) if ledger.start else ()
        yield from ledger._buf


class SessionLedger:
    """The outcomes of one recorder session, from index ``start`` on."""

    def __init__(self, session: int, start: int = 0) -> None:
        self.session = session
        self.start = start  # indices below were settled before this host joined (a restart)
        self._buf = bytearray()  # outcome of index start + i at i
        self.reasons: dict[int, str] = {}
        self._low = start  # every index from start to below this is settled
        # Kept as frames settle: a 12-hour study has a million indices, and the status
        # line and /stats ask for the counts several times a second.
        self.settled: Counter[str] = Counter()

    @property
    def end(self) -> int:
        """Every index below this is known to the ledger (settled or PENDING)."""
        return self.start + len(self._buf)

    @property
    def low(self) -> int:
        """The lowest index not yet settled (from ``start`` on)."""
        return self._low

    @property
    def outcomes(self) -> Sequence[int]:
        """Outcome codes indexed from 0 (compatibility view; see ``settled_since``)."""
        return _Outcomes(self)

    @property
    def nbytes(self) -> int:
        """Bytes the outcome array holds (the reasons come on top, one per loss)."""
        return len(self._buf)

    def _grow(self, count: int) -> None:
        """Know every index below ``count``."""
        if count > self.end:
            if count - 1 >= self._low + MAX_AHEAD:
                raise LedgerRangeError(
                    f"frame index {count - 1} is {count - 1 - self._low} beyond the lowest "
                    f"unsettled index {self._low} of session {self.session}"
                )
            self._buf.extend(bytes(count - self.end))

    def settle(self, index: int, outcome: Outcome, reason: str | None = None) -> bool:
        """Record a final outcome; False (and nothing changes) if it was already final or
        lies below ``start``. LedgerRangeError if it lies absurdly far ahead."""
        if index < self.start:
            return False
        self._grow(index + 1)
        at = index - self.start
        if self._buf[at] != Outcome.PENDING:
            return False
        self._buf[at] = outcome
        if reason is not None:
            self.reasons[index] = reason
        self.settled[f"{outcome.name}({reason})" if reason is not None else outcome.name] += 1
        buf, start, end = self._buf, self.start, self.end
        while self._low < end and buf[self._low - start] != Outcome.PENDING:
            self._low += 1
        return True

    def outcome(self, index: int) -> Outcome:
        if index < self.start:
            raise ValueError(f"frame {index} was settled before this host joined")
        at = index - self.start
        return Outcome(self._buf[at]) if at < len(self._buf) else Outcome.PENDING

    def reason(self, index: int) -> str | None:
        return self.reasons.get(index)

    def known(self, count: int) -> None:
        """The session used at least ``count`` indices."""
        self._grow(count)

    def pending(self) -> list[int]:
        buf, start = self._buf, self.start
        return [i for i in range(self._low, self.end) if buf[i - start] == Outcome.PENDING]

    def settled_since(self, index: int) -> Iterator[tuple[int, Outcome, str | None]]:
        """The settled outcomes from ``index`` (at least ``start``) up to the first
        PENDING one: what a consumer that has persisted everything below ``index`` must
        persist next."""
        index = max(index, self.start)
        buf, start = self._buf, self.start
        while index < self.end:
            code = buf[index - start]
            if code == Outcome.PENDING:
                return
            yield index, Outcome(code), self.reasons.get(index)
            index += 1

    def counts(self) -> Counter[str]:
        counts = Counter(self.settled)
        pending = len(self._buf) - sum(self.settled.values())
        if pending:
            counts["PENDING"] = pending
        return counts

    def __repr__(self) -> str:
        return (
            f"SessionLedger(session={self.session}, start={self.start}, end={self.end}, "
            f"low={self._low})"
        )


class Ledger:
    def __init__(self) -> None:
        self.sessions: dict[int, SessionLedger] = {}

    def session(self, session: int, start: int = 0) -> SessionLedger:
        if session not in self.sessions:
            self.sessions[session] = SessionLedger(session, start=start)
        return self.sessions[session]

    def forget_if_empty(self, session: int) -> None:
        """Drop a session that never used an index (a HELLO and nothing else), so that a
        stream of HELLOs with new session ids cannot grow the ledger."""
        ledger = self.sessions.get(session)
        if ledger is not None and not ledger.nbytes:
            del self.sessions[session]

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for s in self.sessions.values():
            total.update(s.counts())
        return total
