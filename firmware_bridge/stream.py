"""Bytes in, messages out: the link's stream decoder. No I/O, bounded memory.

``feed`` takes whatever a read returned (any split, any garbage) and returns the
messages completed by it and a typed error for every token that failed. Memory is
bounded by the longest valid token: a run of bytes longer than that without a 0x00 is
discarded as it arrives, up to the next delimiter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from firmware_bridge.protocol import (
    DELIMITER,
    Header,
    Message,
    ProtocolError,
    decode_token,
    max_token,
)


@dataclass(frozen=True)
class LinkError:
    """A token the decoder threw away, and why (``kind`` is the counter). ``header`` is
    the damaged message's header when that much was sound."""

    kind: str
    message: str
    header: Header | None = None


@dataclass
class DecoderCounters:
    bytes_in: int = 0
    messages: int = 0
    discarded_bytes: int = 0  # bytes of failed tokens and of delimiter-less runs
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def resyncs(self) -> int:
        """Times the decoder threw bytes away and picked up again at a delimiter."""
        return sum(self.errors.values())


class StreamDecoder:
    def __init__(self, max_payload: int) -> None:
        self.counters = DecoderCounters()
        self._buffer = bytearray()
        self._discarding = False
        self.set_max_payload(max_payload)

    def set_max_payload(self, max_payload: int) -> None:
        """After negotiation: the largest payload accepted from now on."""
        self.max_payload = max_payload
        self.max_token = max_token(max_payload)
        if hasattr(self, "_buffer") and len(self._buffer) > self.max_token:
            self._buffer.clear()
            self._discarding = True

    def reset(self) -> None:
        """Forget a partial token (the link dropped); counters stay."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Message | LinkError]:
        events: list[Message | LinkError] = []
        counters = self.counters
        counters.bytes_in += len(data)
        start = 0
        while True:
            end = data.find(DELIMITER, start)
            if end < 0:
                self._keep(data, start, events)
                return events
            if self._discarding:
                self._discarding = False
                counters.discarded_bytes += end - start
                start = end + 1
                continue
            if self._buffer:
                self._buffer += memoryview(data)[start:end]
                token = bytes(self._buffer)
                self._buffer.clear()
            else:
                token = data[start:end]
            start = end + 1
            if not token:
                continue  # back-to-back delimiters: a sender may flush with them
            if len(token) > self.max_token:
                events.append(self._fail(len(token), "overlong", "token longer than any message"))
                continue
            try:
                message = decode_token(token, self.max_payload)
            except ProtocolError as exc:
                header = exc.header if isinstance(exc.header, Header) else None
                events.append(self._fail(len(token), exc.kind, str(exc), header))
                continue
            counters.messages += 1
            events.append(message)

    def _keep(self, data: bytes, start: int, events: list[Message | LinkError]) -> None:
        rest = len(data) - start
        if self._discarding:
            self.counters.discarded_bytes += rest
        elif len(self._buffer) + rest > self.max_token:
            # No valid message is this long: drop it now rather than hold it.
            size = len(self._buffer) + rest
            events.append(self._fail(size, "overlong", "no delimiter within a message"))
            self._buffer.clear()
            self._discarding = True
        else:
            self._buffer += data[start:]

    def _fail(self, size: int, kind: str, message: str, header: Header | None = None) -> LinkError:
        self.counters.errors[kind] += 1
        self.counters.discarded_bytes += size
        return LinkError(kind, message, header)

    @property
    def buffered(self) -> int:
        return len(self._buffer)
