"""A recorder over the link protocol: frames acknowledged once the runtime stored them."""

from __future__ import annotations

from typing import Any

from edge.runtime.sources.base import Known, SourceFrame
from firmware_bridge.host import HostLink
from firmware_bridge.protocol import Alert, Result
from firmware_bridge.transport import Receiver


class LinkSource:
    """A recorder over the link protocol (serial, socket or USB).

    With ``hold_replies`` nothing goes back to the recorder until ``flush()``: the
    caller first makes durable what the replies will acknowledge (frames and the
    ledger outcomes an ACK moves past).
    """

    def __init__(self, receiver: Receiver, *, hold_replies: bool = False) -> None:
        self.receiver = receiver
        self.link: HostLink = receiver.link
        self.ledger = self.link.ledger
        self.name = receiver.transport.name
        self.hold_replies = hold_replies
        self.recording = False
        receiver.write_replies = not hold_replies

    def connect(self) -> None:
        """Open the transport now; LinkDown (one line) if it cannot be opened."""
        self.receiver.transport.open()
        self.receiver.connected = True

    def poll(self) -> list[SourceFrame]:
        out = [
            SourceFrame(
                f.session,
                f.index,
                f.codec,
                f.timestamp_us,
                data=f.data,
                link_frame=f,
                width=f.meta.width,
                height=f.meta.height,
            )
            for f in self.receiver.poll()
        ]
        if not self.hold_replies:
            self.receiver.flush()
        return out

    def confirm(self, frame: SourceFrame) -> None:
        if frame.link_frame is not None:
            self.link.confirm(frame.link_frame)

    def send_result(self, frame: SourceFrame, result: Result) -> None:
        if frame.link_frame is not None:
            self.link.send_result(frame.link_frame, result)

    def send_alert(self, session: int, index: int, alert: Alert) -> None:
        self.link.send_alert(session, index, alert)

    def flush(self) -> None:
        self.receiver.flush()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.receiver.connected,
            "reconnects": self.receiver.reconnects,
            **self.link.status(),
        }

    def attach(self, known: Known, next_index: int) -> None:
        pass  # the recorder's session and indices identify its frames

    @property
    def finished(self) -> bool:
        return False  # a recorder link ends when the caller stops it

    def close(self) -> None:
        self.receiver.flush()
        self.receiver.close()
