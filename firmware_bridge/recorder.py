"""The recorder end of the link, without I/O: what a recorder's firmware does.

The simulator drives it over a pty or a socket; firmware authors can read it as the
reference for docs/protocol.md. It captures frames into a bounded queue, sends each as a
META and its chunks within the host's credits, keeps every frame the host has not
acknowledged in a window and resends what the host asks for. When it cannot keep a
frame it says so with DROP(index, reason), never silently.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from firmware_bridge.protocol import (
    CAP_RETRANSMIT,
    COMPAT_RETRANSMIT,
    NO_FRAME,
    UART_MAX_CHUNK,
    Ack,
    DropReason,
    Header,
    Hello,
    HelloAck,
    Message,
    MessageType,
    Meta,
    ProtocolError,
    Result,
    bits,
    crc32,
    encode,
)


class Policy(enum.Enum):
    WAIT = "wait"  # hold captured frames while the host has no credits (queue bounded)
    DROP = "drop"  # drop a captured frame at once when there are no credits


@dataclass
class CapturedFrame:
    index: int
    data: bytes
    codec: int = 1
    width: int = 0
    height: int = 0
    timestamp_us: int = 0
    chunks: int = 0
    chunk_size: int = 0  # fixed when first sent, so that resends line up


@dataclass(frozen=True)
class Outgoing:
    """One message to put on the wire, and what it carries (for the ground-truth log)."""

    data: bytes
    type: MessageType
    frame: int | None = None
    chunk: int | None = None
    retransmit: bool = False


@dataclass
class RecorderCounters:
    captured: int = 0
    sent_frames: int = 0
    resent_chunks: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class Recorder:
    def __init__(
        self,
        session: int,
        *,
        max_chunk: int = UART_MAX_CHUNK,
        window: int = 64,
        queue: int = 256,
        policy: Policy = Policy.WAIT,
        name: str = "capsule-edge simulator",
        retransmit: bool = True,
    ) -> None:
        self.session = session
        self.max_chunk = max_chunk
        self.window = window  # frames sent but not acknowledged, at most
        self.queue_limit = queue  # frames captured but not yet sent, at most
        self.policy = policy
        self.name = name
        self.retransmit = retransmit
        self.chunk_size = 0  # 0 until HELLO_ACK
        self.credits = 0
        self.acked_next = 0  # every index below this the host has
        self.counters = RecorderCounters()
        self.drops: dict[int, DropReason] = {}
        self.results: dict[int, Result] = {}  # findings the host sent back, by frame
        self._next_index = 0
        self._queue: deque[CapturedFrame] = deque()
        self._window: OrderedDict[int, CapturedFrame] = OrderedDict()
        self._resend: deque[tuple[int, int | None]] = deque()  # (frame, chunk | None: all)
        self._pending_drops: deque[tuple[int, DropReason]] = deque()
        self._need_hello = True

    # --- capture -----------------------------------------------------------------------

    def capture(
        self, data: bytes, codec: int = 1, width: int = 0, height: int = 0, timestamp_us: int = 0
    ) -> int:
        """A new frame from the sensor; returns its index."""
        index = self._next_index
        self._next_index += 1
        self.counters.captured += 1
        frame = CapturedFrame(index, data, codec, width, height, timestamp_us)
        if self.policy is Policy.DROP and self._no_room():
            self._drop(index, DropReason.BACKPRESSURE)
        elif len(self._queue) >= self.queue_limit:
            self._drop(index, DropReason.RECORDER_FULL)
        else:
            self._queue.append(frame)
        return index

    @property
    def next_index(self) -> int:
        return self._next_index

    def _no_room(self) -> bool:
        return bool(self._queue) or not self._may_send_new()

    def _may_send_new(self) -> bool:
        in_flight = len(self._window)
        return (
            self.chunk_size > 0
            and in_flight < self.window
            and (not self._queue or self._queue[0].index < self.acked_next + self.credits)
        )

    # --- the host ----------------------------------------------------------------------

    def on_message(self, m: Message) -> None:
        h = m.header
        if h.type == MessageType.HEARTBEAT and h.session != self.session:
            self._need_hello = True  # the host does not know us (it restarted)
            return
        if h.session != self.session:
            return
        try:
            if h.type == MessageType.HELLO_ACK:
                accepted = HelloAck.unpack(m.payload)
                self.chunk_size = min(accepted.chunk_size, self.max_chunk)
                self.credits = accepted.credits
                self._release(accepted.resume)
                self._need_hello = False
                # After a reconnect everything still in the window goes again.
                for index in self._window:
                    self._resend.append((index, None))
            elif h.type in (MessageType.ACK, MessageType.NACK):
                ack = Ack.unpack(m.payload)
                self.credits = ack.credits
                if ack.highest != NO_FRAME:
                    self._release(ack.highest + 1)
                if not self.retransmit:
                    return  # a recorder without retransmission only takes the credits
                for index, (count, bitmap) in ack.missing.items():
                    if count == 0:
                        self._resend.append((index, None))
                    else:
                        for chunk in bits(bitmap, count):
                            self._resend.append((index, chunk))
            elif h.type == MessageType.RESULT:
                self.results[h.frame] = Result.unpack(m.payload)
        except ProtocolError:
            pass

    def _release(self, below: int) -> None:
        self.acked_next = max(self.acked_next, below)
        while self._window and next(iter(self._window)) < self.acked_next:
            self._window.popitem(last=False)

    def _drop(self, index: int, reason: DropReason) -> None:
        self.drops[index] = reason
        self.counters.dropped[reason.name.lower()] += 1
        self._pending_drops.append((index, reason))

    # --- output ------------------------------------------------------------------------

    def hello(self) -> Outgoing:
        # The lowest index the host must still hear about: held, or dropped and not yet
        # covered by an ACK.
        unreported = [i for i in self.drops if i >= self.acked_next]
        base = min([next(iter(self._window), self.next_unsent), *unreported])
        caps = CAP_RETRANSMIT if self.retransmit else 0
        payload = Hello(self.max_chunk, self.window, self.name, caps, base, self._next_index).pack()
        return Outgoing(
            encode(Header(MessageType.HELLO, session=self.session), payload), MessageType.HELLO
        )

    @property
    def next_unsent(self) -> int:
        """Every frame below this index has been sent (or dropped) at least once."""
        return self._queue[0].index if self._queue else self._next_index

    def heartbeat(self) -> Outgoing:
        header = Header(MessageType.HEARTBEAT, session=self.session)
        payload = self.next_unsent.to_bytes(4, "little")
        return Outgoing(encode(header, payload), MessageType.HEARTBEAT)

    @property
    def needs_hello(self) -> bool:
        return self._need_hello

    def reconnected(self) -> None:
        """The link came back: introduce ourselves again before anything else."""
        self._need_hello = True
        self.chunk_size = 0

    def next_messages(self) -> list[Outgoing]:
        """The next messages to send, resends first; empty when there is nothing to do
        or no credit (a HELLO when the link needs one)."""
        if self._need_hello or self.chunk_size == 0:
            return [self.hello()]
        out: list[Outgoing] = []
        while self._pending_drops:
            index, reason = self._pending_drops.popleft()
            header = Header(MessageType.DROP, session=self.session, frame=index)
            out.append(Outgoing(encode(header, bytes([reason])), MessageType.DROP, index))
        if self._resend:
            index, chunk = self._resend.popleft()
            frame = self._window.get(index)
            if frame is None:
                if index in self.drops:  # the DROP itself may have been lost: say it again
                    self._pending_drops.append((index, self.drops[index]))
                elif self.acked_next <= index < self.next_unsent:
                    # Asked for a frame we no longer hold: say so.
                    self._drop(index, DropReason.EVICTED)
                return out
            chunks = range(frame.chunks + 1) if chunk is None else [chunk]
            for c in chunks:
                out.append(self._message(frame, c, retransmit=True))
                self.counters.resent_chunks += 1
            return out
        if self._queue and self._may_send_new():
            frame = self._queue.popleft()
            frame.chunk_size = self.chunk_size
            frame.chunks = max(1, -(-len(frame.data) // self.chunk_size))
            self._window[frame.index] = frame
            self.counters.sent_frames += 1
            for c in range(frame.chunks + 1):
                out.append(self._message(frame, c if c < frame.chunks else frame.chunks))
        return out

    def _message(self, frame: CapturedFrame, chunk: int, retransmit: bool = False) -> Outgoing:
        """Chunk ``chunk`` of a frame; chunk index ``frame.chunks`` is its META."""
        compat = COMPAT_RETRANSMIT if retransmit else 0
        if chunk >= frame.chunks:
            meta = Meta(len(frame.data), crc32(frame.data), frame.width, frame.height)
            header = Header(
                MessageType.META,
                session=self.session,
                frame=frame.index,
                chunks=frame.chunks,
                timestamp_us=frame.timestamp_us,
                codec=frame.codec,
                compat=compat,
            )
            return Outgoing(
                encode(header, meta.pack()), MessageType.META, frame.index, None, retransmit
            )
        start = chunk * frame.chunk_size
        header = Header(
            MessageType.CHUNK,
            session=self.session,
            frame=frame.index,
            chunk=chunk,
            chunks=frame.chunks,
            timestamp_us=frame.timestamp_us,
            codec=frame.codec,
            compat=compat,
        )
        payload = frame.data[start : start + frame.chunk_size]
        return Outgoing(encode(header, payload), MessageType.CHUNK, frame.index, chunk, retransmit)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing to resend, nothing unacknowledged."""
        return not (self._queue or self._resend or self._window or self._pending_drops)

    @property
    def queued(self) -> int:
        """Frames captured but not yet sent."""
        return len(self._queue)

    @property
    def unacknowledged(self) -> int:
        return len(self._window)
