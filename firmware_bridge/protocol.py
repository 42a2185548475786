"""The capsule-edge recorder link, version 1: messages and their bytes (docs/protocol.md).

A message on the wire is ``0x00 COBS(header | payload | crc32c) 0x00``:

- the header (32 bytes, little-endian) carries its own CRC-16/CCITT-FALSE, so a corrupt
  length or type is caught before the payload is even looked at;
- CRC-32C (Castagnoli) covers header and payload;
- COBS removes every 0x00 from the message, so 0x00 only ever delimits: after any
  corruption the decoder resynchronises at the next 0x00 and never trusts a length to
  skip ahead.

This module is pure: bytes in, messages out, no I/O and no state.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c
from cobs import cobs

VERSION = 1
HEADER = struct.Struct("<BBBBIIHHIQBB")  # everything before the header CRC
HEADER_SIZE = HEADER.size + 2  # 32
TRAILER_SIZE = 4
DELIMITER = b"\x00"

# Incompatible flags: a receiver that does not know one must refuse the message.
INCOMPAT_KNOWN = 0x00
# Compatible flags: a receiver that does not know one ignores it.
COMPAT_RETRANSMIT = 0x01  # this chunk or META is a resend

UART_MAX_CHUNK = 1024
USB_MAX_CHUNK = 16384
MAX_CHUNK_LIMIT = 65535  # the largest chunk either side may ever negotiate (u16)
MIN_CHUNK = 16  # the smallest chunk the host negotiates
MAX_CHUNKS_PER_FRAME = 4096
NO_FRAME = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    HELLO = 1  # recorder -> host: a session starts (after boot or reconnect)
    HELLO_ACK = 2  # host -> recorder: accepted; chunk size, credits, resume point
    CHUNK = 3  # recorder -> host: a slice of a frame
    META = 4  # recorder -> host: a frame's size, codec, status and CRC-32C
    ACK = 5  # host -> recorder: highest contiguous frame, credits, open frames' bitmaps
    NACK = 6  # host -> recorder: resend these chunks now
    DROP = 7  # recorder -> host: this frame will never come, and why
    HEARTBEAT = 8  # recorder: alive, and every frame below the index in it was sent;
    # host (session 0): "I do not know you: say HELLO"
    RESULT = 9  # host -> recorder: findings for a frame


_TYPES = {int(t): t for t in MessageType}


class Codec(enum.IntEnum):
    RAW_RGB = 0
    JPEG = 1
    PNG = 2
    RAW_BAYER = 3


# Encoded image files a recorder (or a replay) sends as they are.
CODEC_BY_SUFFIX = {".jpg": Codec.JPEG, ".jpeg": Codec.JPEG, ".png": Codec.PNG}


class DropReason(enum.IntEnum):
    BACKPRESSURE = 1  # captured while the host had no credits (policy "drop")
    EVICTED = 2  # asked for a frame the recorder no longer holds
    SENSOR_ERROR = 3
    RECORDER_FULL = 4
    OTHER = 255


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``kind`` names the counter it goes to.

    ``header`` is set when the header itself was sound (its CRC-16 matched): the receiver
    then knows which frame and chunk were damaged and can ask for them at once.
    """

    def __init__(self, kind: str, message: str, header: Header | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.header = header


class Header(NamedTuple):
    """The fixed header. A NamedTuple: the decoder builds one per message."""

    type: MessageType
    session: int = 0
    frame: int = 0
    chunk: int = 0
    chunks: int = 0
    length: int = 0  # payload bytes
    timestamp_us: int = 0
    codec: int = 0
    version: int = VERSION
    incompat: int = 0
    compat: int = 0

    def pack(self) -> bytes:
        body = HEADER.pack(
            self.version,
            int(self.type),
            self.incompat,
            self.compat,
            self.session,
            self.frame,
            self.chunk,
            self.chunks,
            self.length,
            self.timestamp_us,
            self.codec,
            0,
        )
        return body + struct.pack("<H", crc16(body))


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as binascii computes it in C."""
    return binascii.crc_hqx(data, 0xFFFF)


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32C (Castagnoli), hardware-accelerated by the ``crc32c`` package."""
    return int(crc32c.crc32c(data, value))


@dataclass(frozen=True)
class Message:
    header: Header
    payload: bytes = b""

    @property
    def type(self) -> MessageType:
        return self.header.type


def encode(header: Header, payload: bytes = b"") -> bytes:
    """The bytes of one message on the wire: a leading delimiter (it ends whatever a cut
    left behind), the COBS token, the closing delimiter."""
    if header.length != len(payload):
        header = header._replace(length=len(payload))
    body = header.pack() + payload
    token: bytes = cobs.encode(body + struct.pack("<I", crc32(body)))
    return DELIMITER + token + DELIMITER


def max_token(max_payload: int) -> int:
    """The longest COBS token (without delimiter) a message of ``max_payload`` makes."""
    raw = HEADER_SIZE + max_payload + TRAILER_SIZE
    return raw + raw // 254 + 1


def decode_header(raw: bytes) -> Header:
    if len(raw) < HEADER_SIZE:
        raise ProtocolError("short", f"message of {len(raw)} bytes is shorter than a header")
    (crc,) = struct.unpack_from("<H", raw, HEADER.size)
    if crc16(raw[: HEADER.size]) != crc:
        raise ProtocolError("header_crc", "header CRC-16 mismatch")
    fields = HEADER.unpack_from(raw)
    version, mtype, incompat, compat = fields[:4]
    if version != VERSION:
        raise ProtocolError("version", f"protocol version {version}, this host speaks {VERSION}")
    if incompat & ~INCOMPAT_KNOWN:
        raise ProtocolError("incompat", f"unknown incompatible flags 0x{incompat:02x}")
    kind = _TYPES.get(mtype)
    if kind is None:
        raise ProtocolError("type", f"unknown message type {mtype}")
    session, frame, chunk, chunks, length, timestamp_us, codec = fields[4:11]
    # Positional: the decoder builds one per message, keyword calls cost more.
    return Header(
        kind, session, frame, chunk, chunks, length, timestamp_us, codec, version, incompat, compat
    )


def decode_token(token: bytes, max_payload: int) -> Message:
    """One COBS token (delimiter stripped) into a checked message.

    The header is checked, and its length against ``max_payload``, before the payload is
    used: a header claiming 4 GiB is refused without allocating anything for it.
    """
    try:
        raw = cobs.decode(token)
    except cobs.DecodeError:
        # A token cut short ends inside a COBS block. If what came before is a sound
        # header, say which message was cut, so that it can be asked for again.
        prefix = _cobs_prefix(token)
        if len(prefix) >= HEADER_SIZE:
            try:
                header = decode_header(prefix)
            except ProtocolError:
                header = None
            if header is not None and header.length > max_payload:
                raise ProtocolError(
                    "oversize",
                    f"payload length {header.length} exceeds the negotiated {max_payload}",
                    header,
                ) from None
            if header is not None and len(prefix) < HEADER_SIZE + header.length + TRAILER_SIZE:
                raise ProtocolError(
                    "truncated", f"message cut after {len(prefix)} bytes", header
                ) from None
        raise ProtocolError("cobs", "invalid COBS encoding") from None
    header = decode_header(raw)
    if header.length > max_payload:
        raise ProtocolError(
            "oversize",
            f"payload length {header.length} exceeds the negotiated {max_payload}",
            header,
        )
    expected = HEADER_SIZE + header.length + TRAILER_SIZE
    if len(raw) < expected:
        raise ProtocolError(
            "truncated", f"message is {len(raw)} bytes, its header says {expected}", header
        )
    if len(raw) > expected:
        raise ProtocolError(
            "length", f"message is {len(raw)} bytes, its header says {expected}", header
        )
    (crc,) = struct.unpack_from("<I", raw, expected - TRAILER_SIZE)
    if crc32(raw[: expected - TRAILER_SIZE]) != crc:
        raise ProtocolError("crc", "CRC-32C mismatch", header)
    return Message(header, raw[HEADER_SIZE : expected - TRAILER_SIZE])


def _cobs_prefix(token: bytes) -> bytes:
    """What a COBS token cut short decodes to, up to the cut: only to name the message
    that was cut (its header), never to deliver anything."""
    out = bytearray()
    pos = 0
    while pos < len(token) and len(out) < HEADER_SIZE:
        code = token[pos]
        if code == 0:
            break
        out += token[pos + 1 : pos + code]
        pos += code
        if pos < len(token) and code < 0xFF:
            out.append(0)
    return bytes(out)


# Payloads ------------------------------------------------------------------------------

HELLO = struct.Struct("<HHHIIH")  # max chunk, window, capabilities, base, next, name length
CAP_RETRANSMIT = 0x0001  # the recorder resends what the host asks for
HELLO_ACK = struct.Struct("<HHI")  # chunk size, credits, resume (next frame wanted)
META = struct.Struct("<IIHHHHB")  # size, crc32c, width, height, sensor status, battery mV, n/a
ACK = struct.Struct("<IHB")  # highest contiguous (NO_FRAME: none), credits, open frames
OPEN_FRAME = struct.Struct("<IH")  # frame index, chunk count; bitmap follows
DROP = struct.Struct("<B")
HEARTBEAT = struct.Struct("<I")  # next frame index the sender will use / expects
RESULT_HEAD = struct.Struct("<HHB")  # class id, confidence x 65535, box count
RESULT_BOX = struct.Struct("<HHHHH")  # x0, y0, x1, y1 (pixels), score x 65535


@dataclass(frozen=True)
class Hello:
    max_chunk: int
    window: int
    name: str = ""
    capabilities: int = CAP_RETRANSMIT
    base: int = 0  # the lowest frame index the recorder still holds (or has not sent)
    next: int = 0  # the next frame index it will capture

    def pack(self) -> bytes:
        # At most 255 bytes, cut on a character boundary.
        name = self.name.encode("utf-8")[:255].decode("utf-8", "ignore").encode("utf-8")
        head = HELLO.pack(
            self.max_chunk, self.window, self.capabilities, self.base, self.next, len(name)
        )
        return head + name

    @classmethod
    def unpack(cls, data: bytes) -> Hello:
        _need(data, HELLO.size, "HELLO")
        max_chunk, window, caps, base, nxt, n = HELLO.unpack_from(data)
        _need(data, HELLO.size + n, "HELLO name")
        name = data[HELLO.size : HELLO.size + n].decode("utf-8", errors="replace")
        return cls(max_chunk, window, name, caps, base, nxt)


@dataclass(frozen=True)
class HelloAck:
    chunk_size: int
    credits: int
    resume: int  # the next frame index the host wants from this session

    def pack(self) -> bytes:
        return HELLO_ACK.pack(self.chunk_size, self.credits, self.resume)

    @classmethod
    def unpack(cls, data: bytes) -> HelloAck:
        _need(data, HELLO_ACK.size, "HELLO_ACK")
        return cls(*HELLO_ACK.unpack_from(data))


@dataclass(frozen=True)
class Meta:
    size: int
    crc: int
    width: int = 0
    height: int = 0
    sensor_status: int = 0
    battery_mv: int = 0

    def pack(self) -> bytes:
        return META.pack(
            self.size, self.crc, self.width, self.height, self.sensor_status, self.battery_mv, 0
        )

    @classmethod
    def unpack(cls, data: bytes) -> Meta:
        _need(data, META.size, "META")
        return cls(*META.unpack_from(data)[:6])


@dataclass(frozen=True)
class Ack:
    highest: int  # every index at or below this is settled and stored; NO_FRAME: none
    credits: int  # frames beyond ``highest`` the recorder may have in flight
    missing: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    # open frame -> (chunk count, bitmap of chunks still missing, bit i = chunk i)

    def pack(self) -> bytes:
        parts = [ACK.pack(self.highest, self.credits, len(self.missing))]
        for index, (count, bitmap) in self.missing.items():
            size = (count + 7) // 8
            parts.append(OPEN_FRAME.pack(index, count) + bitmap[:size].ljust(size, b"\0"))
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes) -> Ack:
        _need(data, ACK.size, "ACK")
        highest, credits, n = ACK.unpack_from(data)
        offset = ACK.size
        missing = {}
        for _ in range(n):
            _need(data, offset + OPEN_FRAME.size, "ACK open frame")
            index, count = OPEN_FRAME.unpack_from(data, offset)
            offset += OPEN_FRAME.size
            size = (count + 7) // 8
            _need(data, offset + size, "ACK bitmap")
            missing[index] = (count, bytes(data[offset : offset + size]))
            offset += size
        return cls(highest, credits, missing)


def bitmap(indices: set[int] | list[int], count: int) -> bytes:
    out = bytearray((count + 7) // 8)
    for i in indices:
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def bits(data: bytes, count: int) -> list[int]:
    return [i for i in range(count) if data[i // 8] >> (i % 8) & 1]


@dataclass(frozen=True)
class Result:
    class_id: int
    confidence: float
    boxes: tuple[tuple[int, int, int, int, float], ...] = ()

    def pack(self) -> bytes:
        head = RESULT_HEAD.pack(self.class_id, _unit(self.confidence), min(len(self.boxes), 255))
        body = b"".join(
            RESULT_BOX.pack(x0, y0, x1, y1, _unit(score))
            for x0, y0, x1, y1, score in self.boxes[:255]
        )
        return head + body

    @classmethod
    def unpack(cls, data: bytes) -> Result:
        _need(data, RESULT_HEAD.size, "RESULT")
        class_id, conf, n = RESULT_HEAD.unpack_from(data)
        _need(data, RESULT_HEAD.size + n * RESULT_BOX.size, "RESULT boxes")
        boxes = tuple(
            (*b[:4], b[4] / 65535)
            for b in (
                RESULT_BOX.unpack_from(data, RESULT_HEAD.size + i * RESULT_BOX.size)
                for i in range(n)
            )
        )
        return cls(class_id, conf / 65535, boxes)


def _unit(value: float) -> int:
    """A 0-1 score as a u16 fraction of 65535 (clamped)."""
    return round(min(max(value, 0.0), 1.0) * 65535)


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise ProtocolError("payload", f"{what} payload of {len(data)} bytes, needs {size}")
