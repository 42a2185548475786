"""The host end of the recorder link, without I/O: bytes in, frames and replies out.

``receive(bytes)`` feeds the stream decoder; complete, CRC-checked frames queue up for
``take()``; replies (HELLO_ACK, ACK, NACK, CLASSES) queue up for ``outgoing()``. The
consumer ``confirm()``s a frame once it has stored it, and only then does an ACK cover
it: the recorder keeps every frame until the host has it safely. ``send_result`` sends
a frame's findings (a RESULT with a status), ``set_classes`` the names of the class ids.

Every frame index of a recorder session ends in the ledger as DELIVERED,
DELIVERED_AFTER_RETRANSMIT, DROPPED(reason) or LOST(reason); a frame is DELIVERED once
it waits for ``take()``, and it stays there (a recorder reboot does not discard it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from firmware_bridge.ledger import LedgerRangeError, LostReason, Outcome
from firmware_bridge.outbox import Superseded
from firmware_bridge.protocol import (
    ACK_RESULTS,
    CAP_ALERTS,
    CAP_RETRANSMIT,
    CONTROL_PAYLOAD,
    HB_NEED_CLASSES,
    MAX_CHUNK_LIMIT,
    MIN_CHUNK,
    NO_FRAME,
    UART_MAX_CHUNK,
    Alert,
    Classes,
    ClassList,
    DropReason,
    Header,
    Heartbeat,
    Hello,
    HelloAck,
    Message,
    MessageType,
    Meta,
    ProtocolError,
    Result,
    ResultStatus,
    encode,
)
from firmware_bridge.reception import MAX_ASKED, MAX_NACK_ROUNDS, ReceivedFrame, Reception
from firmware_bridge.stream import LinkError, StreamDecoder

MAX_CAPACITY = 16384  # credits are a u16; the window of indices stays small
_RX = {t: f"rx_{t.name.lower()}" for t in MessageType}
__all__ = ["CONTROL_PAYLOAD", "MAX_ASKED", "MAX_NACK_ROUNDS", "HostLink", "ReceivedFrame"]


class HostLink(Reception):
    def __init__(
        self,
        *,
        chunk_size: int = UART_MAX_CHUNK,
        capacity: int = 64,
        retransmit: bool = True,
        max_frame: int = 4 << 20,
        class_names: Sequence[str] | None = None,
        box_class_names: Sequence[str] | None = None,
        results: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity {capacity}: from 1 to {MAX_CAPACITY} frames")
        super().__init__(
            capacity=capacity, retransmit=retransmit, max_frame=max_frame, chunk=chunk_size
        )
        self.chunk_size = chunk_size
        # True: the application sends one RESULT for every frame it takes (HELLO_ACK says so)
        self.results = results
        self.decoder = StreamDecoder(max(chunk_size, CONTROL_PAYLOAD))
        self.hello: Hello | None = None
        self._classes = (tuple(class_names or ()), tuple(box_class_names or ()))
        self._clock = clock
        self._heard: float | None = None  # when the session's recorder last spoke

    # --- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self._asks.batch += 1
        for event in self.decoder.feed(data):
            if isinstance(event, LinkError):
                self._on_error(event)
            else:
                self._on_message(event)

    def on_disconnect(self) -> None:
        """The transport went away. Without retransmission open frames are lost; with it
        the recorder resends them after the next HELLO."""
        self.counters["disconnects"] += 1
        self.decoder.reset()
        if not self._resend and self.session is not None:
            for index in sorted(self._open):
                self._lose(index, LostReason.DISCONNECT)
            self._advance()

    # --- output ------------------------------------------------------------------------

    def outgoing(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def outgoing_messages(self) -> list[bytes]:
        """What ``outgoing`` would give, message by message (an ACK as ``Superseded``)."""
        out, self._out = self._out, []
        return out

    def take(self) -> ReceivedFrame | None:
        return self._ready.popleft() if self._ready else None

    @property
    def waiting(self) -> int:
        return len(self._ready)

    def confirm(self, frame: ReceivedFrame) -> None:
        """The consumer has the frame safely; an ACK may now cover it. A frame of an
        earlier session (the recorder rebooted since) is acknowledged to nobody."""
        if frame.session == self.session and frame.index in self._unconfirmed:
            self._unconfirmed.discard(frame.index)
            self._advance()
            self._send_ack()

    def send_result(self, frame: ReceivedFrame, result: Result) -> None:
        """The findings for a frame, as a RESULT. Every frame taken should get exactly
        one: ``Result(...)`` when inferred, ``Result.none(ResultStatus.UNDECODABLE)``,
        ``.none(FAILED)`` or ``.none(SKIPPED)`` when not. Nothing is sent for a frame of
        an earlier session (that recorder has rebooted), nor a non-OK status to a v1
        recorder (v1 has no status)."""
        if frame.session != self.session:
            self.counters["results_unsent_old_session"] += 1
            return
        status = ResultStatus._value2member_map_.get(result.status)
        if self.version < 2 and status is not ResultStatus.OK:
            self.counters["results_unsent_v1"] += 1
            return
        header = Header(
            MessageType.RESULT, session=frame.session, frame=frame.index, version=self.version
        )
        self._out.append(encode(header, result.pack(self.version)))
        name = status.name.lower() if isinstance(status, ResultStatus) else str(result.status)
        self.counters[f"tx_result_{name}"] += 1

    def send_alert(self, session: int, frame: int, alert: Alert) -> None:
        """A finding confirmed at frame ``frame``, as an ALERT: only to a v2 recorder of
        the current session that said it takes them (CAP_ALERTS in its HELLO)."""
        caps = self.hello.capabilities if self.hello is not None else 0
        if session != self.session or self.version < 2 or not caps & CAP_ALERTS:
            self.counters["alerts_unsent"] += 1
            return
        header = Header(MessageType.ALERT, session=session, frame=frame, version=self.version)
        self._out.append(encode(header, alert.pack()))
        self.counters["tx_alert"] += 1

    def set_classes(
        self, class_names: Sequence[str] | None = None, box_class_names: Sequence[str] | None = None
    ) -> None:
        """The names of RESULT's class ids and of the boxes' class ids. Sent (CLASSES)
        after every HELLO_ACK of a v2 session, and now if a v2 session is running."""
        self._classes = (tuple(class_names or ()), tuple(box_class_names or ()))
        for kind, names in zip(ClassList, self._classes, strict=True):
            Classes.split(kind, names)  # a list too long is an error now, not later
        if self.session is not None:
            self._send_classes()

    def held_bytes(self) -> int:
        """Frame bytes held in memory: open reassemblies, frames not yet taken, and the
        decoder's partial token."""
        return (
            sum(e.size for e in self._open.values())
            + sum(len(f.data) for f in self._ready)
            + self.decoder.buffered
        )

    @property
    def credits(self) -> int:
        """Frames the recorder may still send before it must wait for an ACK: the
        window of ``capacity`` frames beyond the last acknowledged one, less what it
        has sent into it. Zero while the consumer stalls and the window is full."""
        return max(0, self._acked + self.capacity - (self._seen + 1))

    def status(self) -> dict[str, object]:
        silent = None if self._heard is None else round(self._clock() - self._heard, 3)
        return {
            "session": self.session,
            "version": self.version if self.session is not None else None,
            "chunk": self.negotiated_chunk,
            "settled_through": self._next - 1,
            "acked_through": self._acked - 1,
            "open_frames": len(self._open),
            "waiting": len(self._ready),
            "credits": self.credits,
            "silent_s": silent,  # since the recorder last spoke (None: never)
            "ledger": dict(self.ledger.counts()),
            "link": dict(self.counters),
            "decoder_errors": dict(self.decoder.counters.errors),
        }

    # --- messages ----------------------------------------------------------------------

    def _on_message(self, m: Message) -> None:
        h = m.header
        self.counters[_RX[h.type]] += 1
        try:
            if h.type == MessageType.HELLO:
                self._on_hello(h, Hello.unpack(m.payload))
                return
            if self.session is None or h.session != self.session:
                self.counters["no_session"] += 1
                # Ask the recorder to introduce itself (again), in the version it spoke.
                self._out.append(
                    Superseded(encode(Header(MessageType.HEARTBEAT, version=h.version)))
                )
                return
            self._heard = self._clock()
            if h.type == MessageType.CHUNK:
                self._on_chunk(h, m.payload)
            elif h.type == MessageType.META:
                self._on_meta(h, Meta.unpack(m.payload))
            elif h.type == MessageType.DROP:
                code = m.payload[0] if m.payload else DropReason.OTHER
                known = code in DropReason._value2member_map_
                self._on_drop(h.frame, DropReason(code) if known else DropReason.OTHER)
            elif h.type == MessageType.HEARTBEAT:
                beat = Heartbeat.unpack(m.payload)
                self._on_heartbeat(beat)
                if beat.flags & HB_NEED_CLASSES:
                    self._send_classes()
            else:
                self.counters[f"unexpected_{h.type.name.lower()}"] += 1
        except LedgerRangeError as exc:
            self.counters["beyond_window"] += 1
            self._note(str(exc))
        except (ProtocolError, ValueError) as exc:
            self.counters["bad_payload"] += 1
            self._note(f"{h.type.name} frame {h.frame}: {exc}")

    def _on_hello(self, h: Header, hello: Hello) -> None:
        if h.session == 0:
            self.counters["bad_hello"] += 1
            self._note("HELLO with session id 0 (reserved)")
            return
        if hello.base >= NO_FRAME:
            self.counters["bad_hello"] += 1
            self._note(f"HELLO with base 0x{hello.base:08x} (reserved)")
            return
        if self.session is not None and h.session != self.session:
            # A new session: the recorder rebooted. What the old one had open is gone;
            # frames it delivered stay for take(), never to be acknowledged.
            old = self._ledger()
            old.known(self._seen + 1)
            for index in old.pending():
                old.settle(index, Outcome.LOST, LostReason.RECORDER_RESET.value)
            self.counters["recorder_resets"] += 1
            self.ledger.forget_if_empty(self.session)
            self._open.clear()
            self._asks.clear()
            self._whole_rounds.clear()
            self._unconfirmed.clear()
        size = max(MIN_CHUNK, min(hello.max_chunk or self.chunk_size, self.chunk_size))
        size = min(size, MAX_CHUNK_LIMIT)
        if h.session != self.session:
            # Start where the recorder stands: below ``base`` it holds nothing any more
            # (an earlier host instance acknowledged it).
            self._next = self._acked = hello.base
            self._seen = hello.base - 1
            self.ledger.session(h.session, start=hello.base)
        elif size < self.negotiated_chunk:
            # A smaller chunk size: the recorder chunks its window frames afresh.
            for index, entry in self._open.items():
                entry.clear()
                entry.chunks = 0
                self._asks.forget(index)
        self.session = h.session
        self.version = h.version
        self.hello = hello
        self._heard = self._clock()
        self._resend = self.retransmit and bool(hello.capabilities & CAP_RETRANSMIT)
        self.negotiated_chunk = size
        self.decoder.set_max_payload(max(self.negotiated_chunk, CONTROL_PAYLOAD))
        flags = ACK_RESULTS if self.results else 0
        max_frame = min(self.max_frame, NO_FRAME)
        ack = HelloAck(self.negotiated_chunk, self.capacity, self._acked, max_frame, flags)
        header = Header(MessageType.HELLO_ACK, session=h.session, version=self.version)
        self._out.append(encode(header, ack.pack(self.version)))
        self._send_classes()

    def _send_classes(self) -> None:
        if self.version < 2 or self.session is None:
            return
        header = Header(MessageType.CLASSES, session=self.session, version=self.version)
        for kind, names in zip(ClassList, self._classes, strict=True):
            for part in Classes.split(kind, names):
                self._out.append(encode(header, part.pack()))
                self.counters["tx_classes"] += 1
