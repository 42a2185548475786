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
    ACK_RESULTS,
    CAP_ALERTS,
    CAP_RETRANSMIT,
    COMPAT_RETRANSMIT,
    HB_NEED_CLASSES,
    MAX_CHUNKS_PER_FRAME,
    NO_FRAME,
    UART_MAX_CHUNK,
    VERSION,
    Ack,
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
    results: Counter[str] = field(default_factory=Counter)  # RESULTs by status name
    result_repeats: int = 0  # RESULTs for a frame that already had one
    alerts: int = 0  # ALERTs: findings the host confirmed
    requests_ignored: int = 0  # asked for a piece already queued for resending


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
        version: int = VERSION,
    ) -> None:
        self.session = session
        self.max_chunk = max_chunk
        self.window = window  # frames sent but not acknowledged, at most
        self.queue_limit = queue  # frames captured but not yet sent, at most
        self.policy = policy
        self.name = name
        self.retransmit = retransmit
        self.version = version  # the protocol version it speaks
        self.chunk_size = 0  # 0 until HELLO_ACK
        self.credits = 0
        self.acked_next = 0  # every index below this the host has
        self.counters = RecorderCounters()
        self.drops: dict[int, DropReason] = {}
        self.results: dict[int, Result] = {}  # findings the host sent back, by frame
        self.alerts: list[tuple[int, Alert]] = []  # (confirming frame, alert), as they came
        self.max_frame = 0  # the host's largest frame (HELLO_ACK v2), 0: not said
        self.host_sends_results = False  # HELLO_ACK flag: a RESULT for every frame
        # class list -> names by class id (None: not received yet); absent: no CLASSES yet
        self.classes: dict[int, list[str | None]] = {}
        self._next_index = 0
        self._queue: deque[CapturedFrame] = deque()
        self._window: OrderedDict[int, CapturedFrame] = OrderedDict()
        self._resend: deque[tuple[int, int | None]] = deque()  # (frame, chunk | None: all)
        self._queued: set[tuple[int, int | None]] = set()  # what _resend holds
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
                self._on_hello_ack(HelloAck.unpack(m.payload, h.version))
            elif h.type in (MessageType.ACK, MessageType.NACK):
                ack = Ack.unpack(m.payload)
                self.credits = ack.credits
                if ack.highest != NO_FRAME:
                    self._release(ack.highest + 1)
                if not self.retransmit:
                    return  # a recorder without retransmission only takes the credits
                for index, (count, bitmap) in ack.missing.items():
                    if count == 0:
                        self._queue_resend(index, None)
                    else:
                        for chunk in bits(bitmap, count):
                            self._queue_resend(index, chunk)
            elif h.type == MessageType.RESULT:
                self._on_result(h.frame, Result.unpack(m.payload, h.version))
            elif h.type == MessageType.CLASSES:
                self._on_classes(Classes.unpack(m.payload))
            elif h.type == MessageType.ALERT:
                self.alerts.append((h.frame, Alert.unpack(m.payload)))
                self.counters.alerts += 1
        except ProtocolError:
            pass

    def _on_hello_ack(self, accepted: HelloAck) -> None:
        # max_chunk 0 means "the host's size": take it as it is.
        size = accepted.chunk_size
        self.chunk_size = size if not self.max_chunk else min(size, self.max_chunk)
        self.credits = accepted.credits
        self.max_frame = accepted.max_frame
        self.host_sends_results = bool(accepted.flags & ACK_RESULTS)
        self._release(accepted.resume)
        self._need_hello = False
        self.classes.clear()  # the host sends them again after every HELLO_ACK
        # After a reconnect everything still in the window goes again, whole; a frame
        # first sent with bigger chunks than the host now takes is chunked afresh.
        for index, frame in list(self._window.items()):
            if frame.chunk_size > self.chunk_size:
                chunks = max(1, -(-len(frame.data) // self.chunk_size))
                if chunks > MAX_CHUNKS_PER_FRAME:
                    del self._window[index]
                    self._drop(index, DropReason.TOO_LARGE)
                    continue
                frame.chunk_size, frame.chunks = self.chunk_size, chunks
                self._queued = {k for k in self._queued if k[0] != index}
                self._resend = deque(r for r in self._resend if r[0] != index)
            self._queue_resend(index, None)

    def _queue_resend(self, index: int, chunk: int | None) -> None:
        """A request: queued once (a request for what is queued already is answered by
        that resend)."""
        if (index, chunk) in self._queued or (index, None) in self._queued:
            self.counters.requests_ignored += 1
            return
        self._queued.add((index, chunk))
        self._resend.append((index, chunk))

    def _on_result(self, index: int, result: Result) -> None:
        if index in self.results:
            self.counters.result_repeats += 1
        self.results[index] = result
        known = ResultStatus._value2member_map_.get(result.status)
        name = known.name.lower() if isinstance(known, ResultStatus) else f"status_{result.status}"
        self.counters.results[name] += 1

    def _on_classes(self, part: Classes) -> None:
        if part.kind not in ClassList._value2member_map_:
            return  # a list this recorder does not know
        names = self.classes.get(part.kind)
        if part.first == 0 or names is None or len(names) != part.total:
            names = self.classes[part.kind] = [None] * part.total
        names[part.first : part.first + len(part.names)] = part.names

    @property
    def classes_complete(self) -> bool:
        """Both class lists received whole (v2; a v1 host sends none)."""
        if self.version < 2:
            return True
        return all(kind in self.classes and None not in self.classes[kind] for kind in ClassList)

    def class_name(self, kind: ClassList, class_id: int) -> str | None:
        names = self.classes.get(kind) or []
        return names[class_id] if class_id < len(names) else None

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
        caps = (CAP_RETRANSMIT if self.retransmit else 0) | (CAP_ALERTS if self.version >= 2 else 0)
        payload = Hello(self.max_chunk, self.window, self.name, caps, base, self._next_index).pack()
        header = Header(MessageType.HELLO, session=self.session, version=self.version)
        return Outgoing(encode(header, payload), MessageType.HELLO)

    @property
    def next_unsent(self) -> int:
        """Every frame below this index has been sent (or dropped) at least once."""
        return self._queue[0].index if self._queue else self._next_index

    def heartbeat(self) -> Outgoing:
        header = Header(MessageType.HEARTBEAT, session=self.session, version=self.version)
        flags = 0 if self.classes_complete or self.chunk_size == 0 else HB_NEED_CLASSES
        payload = Heartbeat(self.next_unsent, flags).pack(self.version)
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
            header = Header(
                MessageType.DROP, session=self.session, frame=index, version=self.version
            )
            out.append(Outgoing(encode(header, bytes([reason])), MessageType.DROP, index))
        if self._resend:
            index, chunk = self._resend.popleft()
            self._queued.discard((index, chunk))
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
        while self._queue and self._may_send_new():
            frame = self._queue.popleft()
            frame.chunk_size = self.chunk_size
            frame.chunks = max(1, -(-len(frame.data) // self.chunk_size))
            too_large = self.max_frame and len(frame.data) > self.max_frame
            if too_large or frame.chunks > MAX_CHUNKS_PER_FRAME:
                # The host would give it up: say so instead of sending it.
                self._drop(frame.index, DropReason.TOO_LARGE)
                continue
            self._window[frame.index] = frame
            self.counters.sent_frames += 1
            for c in range(frame.chunks + 1):
                out.append(self._message(frame, c if c < frame.chunks else frame.chunks))
            break
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
                version=self.version,
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
            version=self.version,
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
