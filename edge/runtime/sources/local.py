"""Sources without a link (a folder, a video): a ledger, nobody to acknowledge to."""

from __future__ import annotations

from typing import Any

from edge.runtime.sources.base import LOCAL_SESSION, Known, SourceFrame
from firmware_bridge.ledger import Ledger
from firmware_bridge.protocol import Result


class LocalSource:
    """What the sources without a link share: every frame enters the ledger, but there
    is nobody to acknowledge it to or to send findings back to."""

    name: str
    ledger: Ledger

    def __init__(self, name: str) -> None:
        self.name = name
        self.ledger = Ledger()
        self._session = self.ledger.session(LOCAL_SESSION)

    def confirm(self, frame: SourceFrame) -> None:
        pass

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        pass

    def flush(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"ledger": dict(self.ledger.counts())}

    def attach(self, known: Known) -> None:
        pass
