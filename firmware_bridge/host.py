"""The host end of the recorder link, without I/O: bytes in, frames and replies out.

``receive(bytes)`` feeds the stream decoder; complete, CRC-checked frames queue up for
``take()``; replies (HELLO_ACK, ACK, NACK) queue up for ``outgoing()``. The consumer
``confirm()``s a frame once it has stored it, and only then does an ACK cover it: the
recorder keeps every frame until the host has it safely.

Every frame index of a recorder session ends in the ledger as DELIVERED,
DELIVERED_AFTER_RETRANSMIT, DROPPED(reason) or LOST(reason).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from firmware_bridge.ledger import Ledger, LostReason, Outcome, SessionLedger
from firmware_bridge.protocol import (
    CAP_RETRANSMIT,
    COMPAT_RETRANSMIT,
    MAX_CHUNK_LIMIT,
    MAX_CHUNKS_PER_FRAME,
    MIN_CHUNK,
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
    bitmap,
    crc32,
    encode,
)
from firmware_bridge.stream import LinkError, StreamDecoder

CONTROL_PAYLOAD = 4096  # HELLO, META, ACK, DROP, RESULT all fit in this
MAX_NACK_ROUNDS = 16  # then the host gives a frame up as LOST
_RX = {t: f"rx_{t.name.lower()}" for t in MessageType}
MAX_ASKED = 32  # frames named in one ACK or NACK (its payload stays under CONTROL_PAYLOAD)


@dataclass(frozen=True)
class ReceivedFrame:
    session: int
    index: int
    data: bytes
    meta: Meta
    timestamp_us: int
    codec: int
    retransmitted: bool


@dataclass
class _Open:
    chunks: int = 0  # 0: not known yet
    parts: dict[int, bytes] = field(default_factory=dict)
    meta: Meta | None = None
    timestamp_us: int = 0
    codec: int = 0
    retransmitted: bool = False
    damage: str | None = None  # the worst thing seen happen to it
    nack_rounds: int = 0
    asked: set[int] = field(default_factory=set)  # pieces NACKed and not yet resent
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


class HostLink:
    def __init__(
        self,
        *,
        chunk_size: int = UART_MAX_CHUNK,
        capacity: int = 64,
        retransmit: bool = True,
        max_frame: int = 4 << 20,
    ) -> None:
        self.chunk_size = chunk_size
        self.capacity = capacity  # frames beyond the last acknowledged one, at most
        self.retransmit = retransmit  # what the host offers
        self._resend = retransmit  # what this session does: both ends must support it
        self.max_frame = max_frame
        self.decoder = StreamDecoder(max(chunk_size, CONTROL_PAYLOAD))
        self.ledger = Ledger()
        self.counters: Counter[str] = Counter()
        self.errors: list[str] = []  # the last few typed errors, for a status line
        self.session: int | None = None
        self.hello: Hello | None = None
        self.negotiated_chunk = chunk_size
        self._next = 0  # every index below this is settled
        self._acked = 0  # every index below this is settled and, if delivered, confirmed
        self._seen = -1  # highest index any message named
        self._open: dict[int, _Open] = {}
        self._asked_whole: set[int] = set()  # frames NACKed whole, nothing of them seen
        self._whole_rounds: dict[int, int] = {}  # times such a frame was asked for
        self._ready: deque[ReceivedFrame] = deque()
        self._unconfirmed: set[int] = set()
        self._out: list[bytes] = []

    # --- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
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

    def take(self) -> ReceivedFrame | None:
        return self._ready.popleft() if self._ready else None

    @property
    def waiting(self) -> int:
        return len(self._ready)

    def confirm(self, frame: ReceivedFrame) -> None:
        """The consumer has the frame safely; an ACK may now cover it."""
        if frame.session == self.session and frame.index in self._unconfirmed:
            self._unconfirmed.discard(frame.index)
            self._advance()
            self._send_ack()

    def send_result(self, frame: ReceivedFrame, result: Result) -> None:
        header = Header(MessageType.RESULT, session=frame.session, frame=frame.index)
        self._out.append(encode(header, result.pack()))

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
        return {
            "session": self.session,
            "chunk": self.negotiated_chunk,
            "settled_through": self._next - 1,
            "acked_through": self._acked - 1,
            "open_frames": len(self._open),
            "waiting": len(self._ready),
            "credits": self.credits,
            "ledger": dict(self.ledger.counts()),
            "link": dict(self.counters),
            "decoder_errors": dict(self.decoder.counters.errors),
        }

    # --- messages ----------------------------------------------------------------------

    def _on_error(self, error: LinkError) -> None:
        self.counters[f"error_{error.kind}"] += 1
        self._note(f"{error.kind}: {error.message}")
        h = error.header
        if (
            h is None
            or self.session is None
            or h.session != self.session
            or h.type not in (MessageType.CHUNK, MessageType.META)
        ):
            return
        if self._next <= h.frame <= self._next + self.capacity * 2:
            entry = self._open.setdefault(h.frame, _Open())
            entry.damage = (
                LostReason.TRUNCATED.value
                if error.kind == "truncated"
                else (LostReason.CORRUPT.value)
            )
            if h.chunks and not entry.chunks and 0 < h.chunks <= MAX_CHUNKS_PER_FRAME:
                entry.chunks = h.chunks
            self._progress(h.frame)

    def _on_message(self, m: Message) -> None:
        h = m.header
        self.counters[_RX[h.type]] += 1
        try:
            if h.type == MessageType.HELLO:
                self._on_hello(h, Hello.unpack(m.payload))
                return
            if self.session is None or h.session != self.session:
                self.counters["no_session"] += 1
                # Ask the recorder to introduce itself (again).
                self._out.append(encode(Header(MessageType.HEARTBEAT, session=0)))
                return
            if h.type == MessageType.CHUNK:
                self._on_chunk(h, m.payload)
            elif h.type == MessageType.META:
                self._on_meta(h, Meta.unpack(m.payload))
            elif h.type == MessageType.DROP:
                code = m.payload[0] if m.payload else DropReason.OTHER
                known = code in DropReason._value2member_map_
                self._on_drop(h.frame, DropReason(code) if known else DropReason.OTHER)
            elif h.type == MessageType.HEARTBEAT:
                self._on_heartbeat(int.from_bytes(m.payload[:4], "little"))
            else:
                self.counters[f"unexpected_{h.type.name.lower()}"] += 1
        except (ProtocolError, ValueError) as exc:
            self.counters["bad_payload"] += 1
            self._note(f"{h.type.name} frame {h.frame}: {exc}")

    def _on_hello(self, h: Header, hello: Hello) -> None:
        if h.session == 0:
            self.counters["bad_hello"] += 1
            self._note("HELLO with session id 0 (reserved)")
            return
        if self.session is not None and h.session != self.session:
            # A new session: the recorder rebooted; what the old one had open is gone.
            old = self._ledger()
            old.known(self._seen + 1)
            for index in old.pending():
                old.settle(index, Outcome.LOST, LostReason.RECORDER_RESET.value)
            self.counters["recorder_resets"] += 1
            self._open.clear()
            self._asked_whole.clear()
            self._whole_rounds.clear()
            self._unconfirmed.clear()
            self._ready.clear()
        if h.session != self.session:
            # Start where the recorder stands: below ``base`` it holds nothing any more
            # (an earlier host instance acknowledged it).
            self._next = self._acked = hello.base
            self._seen = hello.base - 1
            self.ledger.session(h.session, start=hello.base)
        self.session = h.session
        self.hello = hello
        self._resend = self.retransmit and bool(hello.capabilities & CAP_RETRANSMIT)
        size = min(hello.max_chunk or self.chunk_size, self.chunk_size, MAX_CHUNK_LIMIT)
        self.negotiated_chunk = max(MIN_CHUNK, size)
        self.decoder.set_max_payload(max(self.negotiated_chunk, CONTROL_PAYLOAD))
        self._ledger()
        ack = HelloAck(self.negotiated_chunk, self.capacity, self._acked)
        self._out.append(encode(Header(MessageType.HELLO_ACK, session=h.session), ack.pack()))

    def _admissible(self, index: int) -> bool:
        if index < self._next or self._ledger().outcome(index) != Outcome.PENDING:
            self.counters["duplicates"] += 1
            return False
        if index >= self._limit():
            self.counters["beyond_window"] += 1
            return False
        return True

    def _limit(self) -> int:
        """No sound recorder names a frame this far ahead of what is settled."""
        return self._next + self.capacity * 2 + 64

    def _on_chunk(self, h: Header, payload: bytes) -> None:
        if not self._admissible(h.frame):
            return
        if not 0 < h.chunks <= MAX_CHUNKS_PER_FRAME or h.chunk >= h.chunks:
            self.counters["bad_chunk_numbers"] += 1
            return
        entry = self._open.setdefault(h.frame, _Open())
        if entry.chunks and entry.chunks != h.chunks:
            self.counters["bad_chunk_numbers"] += 1
            return
        entry.chunks = h.chunks
        if h.chunk in entry.parts:
            self.counters["duplicate_chunks"] += 1
            return
        if len(payload) > self.negotiated_chunk:
            self.counters["oversize_chunks"] += 1
            entry.damage = LostReason.CORRUPT.value
            return
        if entry.size + len(payload) > self.max_frame:
            self.counters["frame_too_large"] += 1
            self._lose(h.frame, LostReason.CORRUPT)
            return
        entry.add(h.chunk, payload)
        if entry.asked:
            entry.asked.discard(h.chunk)
        entry.retransmitted |= bool(h.compat & COMPAT_RETRANSMIT)
        if (
            h.chunk + 1 == entry.contiguous
            and h.frame == self._seen
            and len(self._open) == 1
            and not entry.complete
        ):
            return  # the common case: the next chunk of the only open frame, nothing missing
        self._progress(h.frame, h.chunk)

    def _on_meta(self, h: Header, meta: Meta) -> None:
        if not self._admissible(h.frame):
            return
        entry = self._open.setdefault(h.frame, _Open())
        if entry.meta is not None:
            self.counters["duplicate_chunks"] += 1
            return
        if meta.size > self.max_frame:
            self.counters["frame_too_large"] += 1
            self._lose(h.frame, LostReason.CORRUPT)
            return
        entry.meta, entry.timestamp_us, entry.codec = meta, h.timestamp_us, h.codec
        if h.chunks and not entry.chunks and h.chunks <= MAX_CHUNKS_PER_FRAME:
            entry.chunks = h.chunks
        entry.retransmitted |= bool(h.compat & COMPAT_RETRANSMIT)
        entry.asked.discard(entry.chunks)
        self._progress(h.frame, entry.chunks or None)

    def _on_drop(self, index: int, reason: DropReason) -> None:
        if index >= self._limit():
            self.counters["beyond_window"] += 1
            return
        self.counters["drops"] += 1
        if self._ledger().settle(index, Outcome.DROPPED, reason.name.lower()):
            self._open.pop(index, None)
            self._seen = max(self._seen, index)
            self._advance()
            self._send_ack()

    def _on_heartbeat(self, next_index: int) -> None:
        """The recorder has sent every frame below ``next_index``."""
        if next_index > self._limit():
            self.counters["beyond_window"] += 1
            return
        self._seen = max(self._seen, next_index - 1)
        if not self._resend:
            for index in range(self._next, next_index):
                self._close(index)
            self._advance()
        self._send_ack(missing=True)

    # --- bookkeeping -------------------------------------------------------------------

    def _progress(self, index: int, chunk: int | None = None) -> None:
        """A message for ``index`` (chunk ``chunk``; the META counts as chunk ``chunks``)
        arrived: finish what can be finished, and ask at once for what the in-order link
        shows is missing. Each missing piece is asked for once here; the ACKs that answer
        heartbeats ask again for whatever is still missing."""
        entry = self._open.get(index)
        if entry is not None and entry.complete:
            self._complete(index, entry)
        previous_seen, self._seen = self._seen, max(self._seen, index)
        if not self._resend:
            # Serial links keep order: once a later frame speaks, earlier ones are over.
            for earlier in range(self._next, index):
                self._close(earlier)
            self._advance()
            return
        wanted: dict[int, tuple[int, bytes]] = {}
        for earlier in range(max(self._next, previous_seen + 1), index):
            if len(wanted) >= MAX_ASKED:
                break
            if earlier not in self._open and earlier not in self._asked_whole:
                self._asked_whole.add(earlier)  # nothing of it arrived: ask for all of it
                wanted[earlier] = (0, b"")
        for earlier in sorted(k for k in self._open if k <= index):
            if len(wanted) >= MAX_ASKED or _packed(wanted) > CONTROL_PAYLOAD - 600:
                break
            e = self._open[earlier]
            if not e.chunks:
                continue
            limit = e.chunks + 1 if earlier < index else (chunk if chunk is not None else 0)
            if e.contiguous >= min(limit, e.chunks) and (limit <= e.chunks or e.meta):
                continue  # nothing missing below the limit
            gone = [i for i in e.missing(limit) if i not in e.asked]
            if gone:
                e.asked.update(gone)
                wanted[earlier] = (e.chunks + 1, bitmap(gone, e.chunks + 1))
        if wanted:
            self._send_nack(wanted)
        self._advance()

    def _complete(self, index: int, entry: _Open) -> None:
        assert entry.meta is not None
        data = b"".join(entry.parts[i] for i in range(entry.chunks))
        if len(data) != entry.meta.size or crc32(data) != entry.meta.crc:
            self.counters["frame_crc_errors"] += 1
            if self._resend and entry.nack_rounds < MAX_NACK_ROUNDS:
                entry.clear()
                entry.nack_rounds += 1
                count = entry.chunks + 1
                self._send_nack({index: (count, bitmap(list(range(count)), count))})
            else:
                self._lose(index, LostReason.FRAME_CRC)
            return
        outcome = Outcome.DELIVERED_AFTER_RETRANSMIT if entry.retransmitted else Outcome.DELIVERED
        self._ledger().settle(index, outcome)
        del self._open[index]
        assert self.session is not None
        self._ready.append(
            ReceivedFrame(
                self.session,
                index,
                data,
                entry.meta,
                entry.timestamp_us,
                entry.codec,
                entry.retransmitted,
            )
        )
        self._unconfirmed.add(index)
        self.counters["frames"] += 1

    def _close(self, index: int) -> None:
        """Without retransmission: the recorder is past ``index``; settle it."""
        if self._ledger().outcome(index) != Outcome.PENDING:
            return
        entry = self._open.get(index)
        if entry is None:
            self._lose(index, LostReason.GAP)
        elif entry.damage:
            self._lose(index, LostReason(entry.damage))
        else:
            self._lose(index, LostReason.INCOMPLETE)

    def _lose(self, index: int, reason: LostReason) -> None:
        if self._ledger().settle(index, Outcome.LOST, reason.value):
            self.counters[f"lost_{reason.value}"] += 1
        self._open.pop(index, None)

    def _advance(self) -> None:
        ledger = self._ledger()
        while self._next <= self._seen and ledger.outcome(self._next) != Outcome.PENDING:
            self._asked_whole.discard(self._next)
            self._whole_rounds.pop(self._next, None)
            self._next += 1
        while self._acked < self._next and self._acked not in self._unconfirmed:
            self._acked += 1

    def _ledger(self) -> SessionLedger:
        assert self.session is not None
        return self.ledger.session(self.session)

    def _send_ack(self, missing: bool = False) -> None:
        wanted: dict[int, tuple[int, bytes]] = {}
        if missing and self._resend:
            for index in range(self._next, self._seen + 1):
                entry = self._open.get(index)
                if self._ledger().outcome(index) != Outcome.PENDING:
                    continue
                if entry is None or not entry.chunks:
                    rounds = self._whole_rounds.get(index, 0) + 1
                    if rounds > MAX_NACK_ROUNDS:
                        self._lose(index, LostReason.GAP)
                        continue
                    self._whole_rounds[index] = rounds
                    self._asked_whole.add(index)
                    wanted[index] = (0, b"")
                else:
                    entry.asked.clear()
                    entry.nack_rounds += 1
                    if entry.nack_rounds > MAX_NACK_ROUNDS:
                        self._lose(index, LostReason(entry.damage or "incomplete"))
                        continue
                    count = entry.chunks + 1
                    wanted[index] = (count, bitmap(entry.missing(), count))
                if len(wanted) >= MAX_ASKED or _packed(wanted) > CONTROL_PAYLOAD - 600:
                    break
            self._advance()
        # ``credits`` on the wire counts from ``highest``: frames below highest + 1 +
        # capacity may be in flight, whatever has been sent of them already.
        ack = Ack(self._acked - 1 if self._acked else NO_FRAME, self.capacity, wanted)
        header = Header(MessageType.ACK, session=self.session or 0)
        self._out.append(encode(header, ack.pack()))
        self.counters["tx_ack"] += 1

    def _send_nack(self, wanted: dict[int, tuple[int, bytes]]) -> None:
        nack = Ack(self._acked - 1 if self._acked else NO_FRAME, self.capacity, wanted)
        header = Header(MessageType.NACK, session=self.session or 0)
        self._out.append(encode(header, nack.pack()))
        self.counters["tx_nack"] += 1

    def _note(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-20]


def _packed(wanted: dict[int, tuple[int, bytes]]) -> int:
    return sum(6 + len(bitmap) for _, bitmap in wanted.values())
