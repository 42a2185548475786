"""The host's reliability logic: reassembly, the ledger, credits, and what to ask the
recorder to send again (docs/protocol.md sections 6 and 7). ``HostLink`` (host.py) is
the application's face of it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from firmware_bridge.ledger import Ledger, LostReason, Outcome, SessionLedger
from firmware_bridge.outbox import Superseded
from firmware_bridge.protocol import (
    COMPAT_RETRANSMIT,
    CONTROL_PAYLOAD,
    MAX_CHUNKS_PER_FRAME,
    NO_FRAME,
    VERSION,
    Ack,
    DropReason,
    Header,
    Heartbeat,
    MessageType,
    Meta,
    bitmap,
    crc32,
    encode,
)
from firmware_bridge.reassembly import WHOLE, Asks, OpenFrame
from firmware_bridge.stream import LinkError

MAX_NACK_ROUNDS = 16  # heartbeat rounds; then the host gives a frame up as LOST
MAX_ASKED = 32  # frames named in one ACK or NACK
ENTRY_BYTES = CONTROL_PAYLOAD - 600  # entries stop past this: every ACK/NACK <= 4022 bytes


@dataclass(frozen=True)
class ReceivedFrame:
    session: int
    index: int
    data: bytes
    meta: Meta
    timestamp_us: int
    codec: int
    retransmitted: bool


class Reception:
    """Frames arriving for the current session, and the replies they call for."""

    def __init__(self, *, capacity: int, retransmit: bool, max_frame: int, chunk: int) -> None:
        self.capacity = capacity  # frames beyond the last acknowledged one, at most
        self.retransmit = retransmit  # what the host offers
        self._resend = retransmit  # what this session does: both ends must support it
        self.max_frame = max_frame
        self.negotiated_chunk = chunk
        self.ledger = Ledger()
        self.counters: Counter[str] = Counter()
        self.errors: list[str] = []  # the last few typed errors, for a status line
        self.session: int | None = None
        self.version = VERSION  # the session's protocol version (its HELLO's)
        self._next = 0  # every index below this is settled
        self._acked = 0  # every index below this is settled and, if delivered, confirmed
        self._seen = -1  # highest index any message named
        self._open: dict[int, OpenFrame] = {}
        self._asks = Asks()
        self._whole_rounds: dict[int, int] = {}  # times a frame was asked for whole
        self._ready: deque[ReceivedFrame] = deque()
        self._unconfirmed: set[int] = set()
        self._out: list[bytes] = []

    def _on_error(self, error: LinkError) -> None:
        self.counters[f"error_{error.kind}"] += 1
        self._note(f"{error.kind}: {error.message}")
        h = error.header
        if (
            not isinstance(h, Header)
            or self.session is None
            or h.session != self.session
            or h.type not in (MessageType.CHUNK, MessageType.META)
        ):
            return
        if not self._next <= h.frame <= min(self._next + self.capacity * 2, self._limit() - 1):
            return
        if self._ledger().outcome(h.frame) != Outcome.PENDING:
            self.counters["damaged_settled"] += 1  # a stale copy: nothing to ask for
            return
        entry = self._open.setdefault(h.frame, OpenFrame())
        entry.damage = (
            LostReason.TRUNCATED.value if error.kind == "truncated" else LostReason.CORRUPT.value
        )
        if h.chunks and not entry.chunks and 0 < h.chunks <= MAX_CHUNKS_PER_FRAME:
            entry.chunks = h.chunks
        # The request for this piece is answered, if damaged: ask again at the next
        # message that shows it missing.
        self._asks.answered(h.frame, WHOLE)
        if entry.chunks:
            piece = h.chunk if h.type == MessageType.CHUNK else entry.chunks
            self._asks.answered(h.frame, piece)
        self._progress(h.frame)

    def _admissible(self, index: int) -> bool:
        if index < self._next or self._ledger().outcome(index) != Outcome.PENDING:
            self.counters["duplicates"] += 1
            return False
        if index >= self._limit():
            self.counters["beyond_window"] += 1
            return False
        return True

    def _limit(self) -> int:
        """No sound recorder names a frame this far ahead of what is settled (and no
        frame is 0xFFFFFFFF, NO_FRAME)."""
        return min(self._next + self.capacity * 2 + 64, NO_FRAME)

    def _on_chunk(self, h: Header, payload: bytes) -> None:
        if not self._admissible(h.frame):
            return
        if not 0 < h.chunks <= MAX_CHUNKS_PER_FRAME or h.chunk >= h.chunks:
            self.counters["bad_chunk_numbers"] += 1
            return
        entry = self._open.setdefault(h.frame, OpenFrame())
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
            self._answered(h.frame, h.chunk)
            return
        if entry.size + len(payload) > self.max_frame:
            self.counters["frame_too_large"] += 1
            self._lose(h.frame, LostReason.CORRUPT)
            return
        entry.add(h.chunk, payload)
        entry.retransmitted |= bool(h.compat & COMPAT_RETRANSMIT)
        overdue = self._answered(h.frame, h.chunk)
        if (
            not overdue
            and h.chunk + 1 == entry.contiguous
            and h.frame == self._seen
            and len(self._open) == 1
            and not entry.complete
        ):
            return  # the common case: the next chunk of the only open frame, nothing missing
        self._progress(h.frame, h.chunk)

    def _on_meta(self, h: Header, meta: Meta) -> None:
        if not self._admissible(h.frame):
            return
        entry = self._open.setdefault(h.frame, OpenFrame())
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
        if entry.chunks:
            self._answered(h.frame, entry.chunks)
        self._progress(h.frame, entry.chunks or None)

    def _answered(self, index: int, piece: int) -> bool:
        """A copy of a piece arrived; True if that shows earlier requests unanswered."""
        if not len(self._asks):
            return False
        whole = self._asks.answered(index, WHOLE)
        return self._asks.answered(index, piece) or whole

    def _on_drop(self, index: int, reason: DropReason) -> None:
        if index >= self._limit():
            self.counters["beyond_window"] += 1
            return
        self.counters["drops"] += 1
        if self._ledger().settle(index, Outcome.DROPPED, reason.name.lower()):
            self._open.pop(index, None)
            self._asks.forget(index)
            self._seen = max(self._seen, index)
            self._advance()
            self._send_ack()

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        """The recorder has sent every frame below ``next_unsent``."""
        next_index = beat.next_unsent
        if next_index > self._limit():
            # A recorder that dropped frames while nobody heard their DROPs is this far
            # ahead: take the window's part of it (memory stays bounded) and answer,
            # or neither end moves again; the rest is learnt as the window moves on.
            self.counters["beyond_window"] += 1
            next_index = self._limit()
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
        shows is missing and has not been asked for (or was asked for, unanswered)."""
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
        asks, ledger = self._asks, self._ledger()
        wanted: dict[int, tuple[int, bytes]] = {}
        overdue = asks.overdue
        whole = set(range(max(self._next, previous_seen + 1), index))
        whole |= {f for f, p in overdue if p == WHOLE and f < self._limit()}
        for earlier in sorted(whole):
            if len(wanted) >= MAX_ASKED:
                break
            if (
                earlier >= self._next
                and earlier not in self._open
                and not asks.outstanding(earlier, WHOLE)
                and ledger.outcome(earlier) == Outcome.PENDING
            ):
                asks.ask(earlier, WHOLE)  # nothing of it arrived: ask for all of it
                wanted[earlier] = (0, b"")
        late = {f for f, p in overdue if p != WHOLE}
        for earlier in sorted({k for k in self._open if k <= index} | late):
            if len(wanted) >= MAX_ASKED or _packed(wanted) > ENTRY_BYTES:
                break
            e = self._open.get(earlier)
            if e is None or not e.chunks or asks.count(earlier) >= e.missing_count:
                continue  # nothing missing that is not asked for already
            limit = e.chunks + 1 if earlier < index else (chunk if chunk is not None else 0)
            gone = set(e.missing(limit)) if limit else set()
            if earlier in late:
                gone |= {p for f, p in overdue if f == earlier and not e.has(p)}
            gone = {i for i in gone if i <= e.chunks and not asks.outstanding(earlier, i)}
            if gone:
                for i in sorted(gone):
                    asks.ask(earlier, i)
                wanted[earlier] = (e.chunks + 1, bitmap(gone, e.chunks + 1))
        if overdue:  # what was not asked again above (settled since, or no room) waits
            asks.overdue = {k for k in overdue if k[0] in self._open or k[1] == WHOLE}
        if wanted:
            self._send_nack(wanted)
        self._advance()

    def _complete(self, index: int, entry: OpenFrame) -> None:
        meta = entry.meta
        assert isinstance(meta, Meta)
        data = b"".join(entry.parts[i] for i in range(entry.chunks))
        if len(data) != meta.size or crc32(data) != meta.crc:
            self.counters["frame_crc_errors"] += 1
            if self._resend and entry.nack_rounds < MAX_NACK_ROUNDS:
                entry.clear()
                entry.nack_rounds += 1
                count = entry.chunks + 1
                for piece in range(count):
                    self._asks.ask(index, piece)
                self._send_nack({index: (count, bitmap(range(count), count))})
            else:
                self._lose(index, LostReason.FRAME_CRC)
            return
        outcome = Outcome.DELIVERED_AFTER_RETRANSMIT if entry.retransmitted else Outcome.DELIVERED
        self._ledger().settle(index, outcome)
        del self._open[index]
        self._asks.forget(index)
        assert self.session is not None
        frame = ReceivedFrame(
            self.session, index, data, meta, entry.timestamp_us, entry.codec, entry.retransmitted
        )
        self._ready.append(frame)
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
        self._asks.forget(index)

    def _advance(self) -> None:
        ledger = self._ledger()
        while self._next <= self._seen and ledger.outcome(self._next) != Outcome.PENDING:
            self._whole_rounds.pop(self._next, None)
            self._next += 1
        while self._acked < self._next and self._acked not in self._unconfirmed:
            self._acked += 1

    def _ledger(self) -> SessionLedger:
        assert self.session is not None
        return self.ledger.session(self.session)

    def _send_ack(self, missing: bool = False) -> None:
        """An ACK; ``missing`` (the answer to a HEARTBEAT): one request round, naming
        every missing piece except those asked for while reading these very bytes."""
        wanted: dict[int, tuple[int, bytes]] = {}
        if missing and self._resend:
            asks = self._asks
            asks.heartbeat()
            for index in range(self._next, self._seen + 1):
                if self._ledger().outcome(index) != Outcome.PENDING:
                    continue
                entry = self._open.get(index)
                if entry is None or not entry.chunks:
                    if asks.outstanding(index, WHOLE):
                        continue
                    rounds = self._whole_rounds.get(index, 0) + 1
                    if rounds > MAX_NACK_ROUNDS:
                        self._lose(index, LostReason.GAP)
                        continue
                    self._whole_rounds[index] = rounds
                    asks.ask(index, WHOLE)
                    wanted[index] = (0, b"")
                else:
                    gone = [i for i in entry.missing() if not asks.outstanding(index, i)]
                    if not gone:
                        continue  # all asked for a moment ago, in flight
                    entry.nack_rounds += 1
                    if entry.nack_rounds > MAX_NACK_ROUNDS:
                        self._lose(index, LostReason(entry.damage or "incomplete"))
                        continue
                    for i in gone:
                        asks.ask(index, i)
                    count = entry.chunks + 1
                    wanted[index] = (count, bitmap(gone, count))
                if len(wanted) >= MAX_ASKED or _packed(wanted) > ENTRY_BYTES:
                    break
            self._advance()
        self._out.append(
            Superseded(encode(self._header(MessageType.ACK), self._ack(wanted).pack()))
        )
        self.counters["tx_ack"] += 1

    def _send_nack(self, wanted: dict[int, tuple[int, bytes]]) -> None:
        self._out.append(
            Superseded(encode(self._header(MessageType.NACK), self._ack(wanted).pack()))
        )
        self.counters["tx_nack"] += 1

    def _ack(self, wanted: dict[int, tuple[int, bytes]]) -> Ack:
        # ``credits`` on the wire counts from ``highest``: frames below highest + 1 +
        # capacity may be in flight, whatever has been sent of them already.
        return Ack(self._acked - 1 if self._acked else NO_FRAME, self.capacity, wanted)

    def _header(self, kind: MessageType) -> Header:
        return Header(kind, session=self.session or 0, version=self.version)

    def _note(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-20]


def _packed(wanted: dict[int, tuple[int, bytes]]) -> int:
    return sum(6 + len(bitmap) for _, bitmap in wanted.values())
