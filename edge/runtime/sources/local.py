"""Sources without a link (a folder, a video): a ledger, nobody to acknowledge to."""

from __future__ import annotations

from typing import Any

from edge.runtime.sources.base import LOCAL_SESSION, Known, SourceFrame
from firmware_bridge.ledger import Ledger, Outcome
from firmware_bridge.protocol import Alert, Result


class LocalSource:
    """What the sources without a link share: every frame enters the ledger, but there
    is nobody to acknowledge it to or to send findings back to."""

    name: str
    ledger: Ledger

    def __init__(self, name: str) -> None:
        self.name = name
        self.ledger = Ledger()
        self._session = self.ledger.session(LOCAL_SESSION)
        self._known: Known = {}
        self._next = 0  # the study index the next new frame gets
        self.unchanged = 0  # frames the study already held (same origin, same bytes)

    def confirm(self, frame: SourceFrame) -> None:
        pass

    def send_alert(self, session: int, index: int, alert: Alert) -> None:
        pass  # nobody to tell: the dashboard shows it

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        pass

    def flush(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"ledger": dict(self.ledger.counts()), "already_held": self.unchanged}

    def attach(self, known: Known, next_index: int) -> None:
        """Every run adds its frames after those the study holds, whichever source put
        them there: a second video or camera run never reuses an index."""
        self._known = known
        self._next = next_index
        # Indices below are earlier runs' account: this run's ledger starts after them.
        del self.ledger.sessions[LOCAL_SESSION]
        self._session = self.ledger.session(LOCAL_SESSION, start=next_index)

    def _held(self, origin: str, crc: int) -> bool:
        """Whether the study holds this frame already, byte for byte."""
        if self._known.get(origin, (0, None))[1] == crc:
            self.unchanged += 1
            return True
        return False

    def _settle_new(self, outcome: Outcome, reason: str | None = None) -> int:
        index, self._next = self._next, self._next + 1
        self._session.settle(index, outcome, reason)
        return index
