"""Where every frame index ended: the link's account of a study.

Every index a recorder session used ends in exactly one outcome. One byte per frame
(100,000 frames: 100 kB); reasons are kept only for frames that did not arrive.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


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


@dataclass
class SessionLedger:
    session: int
    outcomes: bytearray = field(default_factory=bytearray)
    reasons: dict[int, str] = field(default_factory=dict)
    start: int = 0  # indices below were settled before this host joined (a restart)
    # Kept as frames settle: a 12-hour study has a million indices, and the status line
    # and /stats ask for the counts several times a second.
    settled: Counter[str] = field(default_factory=Counter)

    def settle(self, index: int, outcome: Outcome, reason: str | None = None) -> bool:
        """Record a final outcome; False (and nothing changes) if it was already final."""
        if index < self.start:
            return False
        if index >= len(self.outcomes):
            self.outcomes.extend(bytes(index + 1 - len(self.outcomes)))
        if self.outcomes[index] != Outcome.PENDING:
            return False
        self.outcomes[index] = outcome
        if reason is not None:
            self.reasons[index] = reason
        self.settled[f"{outcome.name}({reason})" if reason is not None else outcome.name] += 1
        return True

    def outcome(self, index: int) -> Outcome:
        if index < self.start:
            raise ValueError(f"frame {index} was settled before this host joined")
        return Outcome(self.outcomes[index]) if index < len(self.outcomes) else Outcome.PENDING

    def known(self, count: int) -> None:
        """The session used at least ``count`` indices."""
        if count > len(self.outcomes):
            self.outcomes.extend(bytes(count - len(self.outcomes)))

    def pending(self) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if o == Outcome.PENDING and i >= self.start]

    def counts(self) -> Counter[str]:
        counts = Counter(self.settled)
        pending = max(0, len(self.outcomes) - self.start) - sum(self.settled.values())
        if pending:
            counts["PENDING"] = pending
        return counts


class Ledger:
    def __init__(self) -> None:
        self.sessions: dict[int, SessionLedger] = {}

    def session(self, session: int, start: int = 0) -> SessionLedger:
        if session not in self.sessions:
            self.sessions[session] = SessionLedger(session, start=start)
        return self.sessions[session]

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for s in self.sessions.values():
            total.update(s.counts())
        return total
