"""What every frame source is: the frame it yields and the interface the runtime uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from firmware_bridge.host import ReceivedFrame
from firmware_bridge.ledger import Ledger
from firmware_bridge.protocol import Alert, Result

LOCAL_SESSION = 0  # the ledger session of sources without a recorder session
# A folder session's frames in the study: origin -> (index, CRC-32C of its bytes).
Known = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class SourceFrame:
    """One frame as it arrived: encoded bytes (``data``) or decoded RGB (``image``)."""

    session: int
    index: int
    codec: int
    timestamp_us: int
    data: bytes | None = None
    image: Any = None  # numpy RGB uint8, for sources that decode themselves
    link_frame: ReceivedFrame | None = None
    width: int = 0  # for raw pixel codecs (from the recorder's META)
    height: int = 0
    origin: str | None = None  # a folder frame's relative path


class FrameSource(Protocol):
    name: str
    ledger: Ledger
    # A recording (a folder, a video file) is read as fast as inference goes; a live
    # source (a recorder, a camera) sets its own pace.
    recording: bool

    def poll(self) -> list[SourceFrame]:
        """The frames that arrived since the last call (waits briefly when none)."""
        ...

    def confirm(self, frame: SourceFrame) -> None:
        """The frame is stored; a link may now acknowledge it."""
        ...

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        """Findings for a frame, back to where it came from (if that listens)."""
        ...

    def send_alert(self, session: int, index: int, alert: Alert) -> None:
        """A finding confirmed at frame ``session:index``, to where it came from."""
        ...

    def flush(self) -> None:
        """Send the replies queued so far (acknowledgements, results)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def attach(self, known: Known, next_index: int) -> None:
        """What the study already holds of this source (before the first poll): its
        frames with an origin, and the first index of the local session not yet used."""
        ...

    @property
    def finished(self) -> bool: ...

    def close(self) -> None: ...
