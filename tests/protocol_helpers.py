"""What the protocol tests share: slow reference implementations (CRCs, COBS, the
header), wire helpers and hypothesis settings."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable

from cobs import cobs
from hypothesis import strategies as st

from firmware_bridge import protocol
from firmware_bridge.protocol import (
    Header,
    Message,
    MessageType,
)
from firmware_bridge.stream import LinkError, StreamDecoder

# No deadline (the machine is shared with a training job) and no example database (it
# would leave an untracked .hypothesis/ folder in the checkout).
FAST = {"deadline": None, "database": None}

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)


# Slow references, bit by bit -----------------------------------------------------------


def crc16_ref(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no xorout."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def crc32c_ref(data: bytes) -> int:
    """CRC-32C: reflected poly 0x82F63B78, init and xorout 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def cobs_ref(data: bytes) -> bytes:
    """COBS: every zero-free run as (length + 1, run), runs split at 254 bytes. A final run
    that fills its 0xFF blocks exactly needs no closing empty block."""
    out = bytearray()
    runs = data.split(b"\x00")
    for i, run in enumerate(runs):
        last = i == len(runs) - 1
        while len(run) >= 254:
            out += b"\xff" + run[:254]
            run = run[254:]
            if last and not run:
                return bytes(out)
        out += bytes([len(run) + 1]) + run
    return bytes(out)


def header_ref(h: Header) -> bytes:
    """The 32 header bytes of the wire format, built field by field."""
    body = (
        struct.pack("<BBBB", h.version, int(h.type), h.incompat, h.compat)
        + struct.pack("<IIHH", h.session, h.frame, h.chunk, h.chunks)
        + struct.pack("<IQ", h.length, h.timestamp_us)
        + struct.pack("<BB", h.codec, 0)
    )
    return body + struct.pack("<H", crc16_ref(body))


def wire(raw: bytes) -> bytes:
    """Frame already-built message bytes (header | payload | trailer) by hand."""
    return b"\x00" + cobs.encode(raw) + b"\x00"


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", crc32c_ref(body))


def feed_all(decoder: StreamDecoder, data: bytes, splits: Iterable[int] = ()) -> list:
    """Feed ``data`` cut at ``splits``; check the buffer bound after every read."""
    events: list[Message | LinkError] = []
    cuts = [0, *sorted({min(max(s, 0), len(data)) for s in splits}), len(data)]
    for a, b in itertools.pairwise(cuts):
        events += decoder.feed(data[a:b])
        assert decoder.buffered <= decoder.max_token
    for event in events:
        assert isinstance(event, Message | LinkError), event
    return events


def messages(events: list) -> list[Message]:
    return [e for e in events if isinstance(e, Message)]


def errors(events: list) -> list[LinkError]:
    return [e for e in events if isinstance(e, LinkError)]


# Byte strings with long zero-free runs, so that COBS has to split at 254.
cobs_data = st.lists(
    st.one_of(st.just(b"\x00"), st.binary(max_size=600).map(lambda b: b.replace(b"\0", b"\1")))
).map(b"".join)


headers = st.builds(
    Header,
    type=st.sampled_from(MessageType),
    session=U32,
    frame=U32,
    chunk=U16,
    chunks=U16,
    timestamp_us=U64,
    codec=U8,
    compat=U8,
    # A NamedTuple: st.builds would otherwise draw its defaulted fields too.
    length=st.just(0),
    version=st.just(protocol.VERSION),
    incompat=st.just(0),
)
