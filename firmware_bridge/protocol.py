"""The capsule-edge recorder link, version 2: messages and their bytes (docs/protocol.md).

A message on the wire is ``0x00 COBS(header | payload | crc32c) 0x00``:

- the header (32 bytes, little-endian) carries its own CRC-16/CCITT-FALSE, so a corrupt
  length or type is caught before the payload is even looked at;
- CRC-32C (Castagnoli) covers header and payload;
- COBS removes every 0x00 from the message, so 0x00 only ever delimits: after any
  corruption the decoder resynchronises at the next 0x00 and never trusts a length to
  skip ahead.

This module is pure: bytes in, messages out, no I/O and no state. The payloads are in
``firmware_bridge.messages`` and re-exported here.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

import crc32c
from cobs import cobs

from firmware_bridge.limits import (  # re-exported: the codec's own bounds
    MAX_CHUNK_LIMIT as MAX_CHUNK_LIMIT,
)
from firmware_bridge.limits import (
    MAX_CHUNKS_PER_FRAME as MAX_CHUNKS_PER_FRAME,
)
from firmware_bridge.limits import (
    MIN_CHUNK as MIN_CHUNK,
)
from firmware_bridge.limits import (
    UART_MAX_CHUNK as UART_MAX_CHUNK,
)
from firmware_bridge.limits import (
    USB_MAX_CHUNK as USB_MAX_CHUNK,
)
from firmware_bridge.messages import (
    ACK,
    ACK_RESULTS,
    ALERT,
    CAP_ALERTS,
    CAP_RETRANSMIT,
    CLASSES,
    CONTROL_PAYLOAD,
    DROP,
    HB_NEED_CLASSES,
    HEARTBEAT,
    HEARTBEAT_V2,
    HELLO,
    HELLO_ACK,
    HELLO_ACK_V2,
    MAX_BOXES,
    META,
    NO_CLASS,
    NO_FRAME,
    OPEN_FRAME,
    RESULT_BOX,
    RESULT_BOX_V2,
    RESULT_HEAD,
    RESULT_HEAD_V2,
    VERSION,
    VERSIONS,
    Ack,
    Alert,
    Box,
    Classes,
    ClassList,
    DropReason,
    Heartbeat,
    Hello,
    HelloAck,
    Meta,
    ProtocolError,
    Result,
    ResultStatus,
    bitmap,
    bits,
)

__all__ = [
    "ACK",
    "ACK_RESULTS",
    "ALERT",
    "CAP_ALERTS",
    "CAP_RETRANSMIT",
    "CLASSES",
    "CODEC_BY_SUFFIX",
    "COMPAT_RETRANSMIT",
    "CONTROL_PAYLOAD",
    "DELIMITER",
    "DROP",
    "HB_NEED_CLASSES",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT",
    "HEARTBEAT_V2",
    "HELLO",
    "HELLO_ACK",
    "HELLO_ACK_V2",
    "INCOMPAT_KNOWN",
    "MAX_BOXES",
    "MAX_CHUNKS_PER_FRAME",
    "MAX_CHUNK_LIMIT",
    "META",
    "MIN_CHUNK",
    "NO_CLASS",
    "NO_FRAME",
    "OPEN_FRAME",
    "RESULT_BOX",
    "RESULT_BOX_V2",
    "RESULT_HEAD",
    "RESULT_HEAD_V2",
    "TRAILER_SIZE",
    "UART_MAX_CHUNK",
    "USB_MAX_CHUNK",
    "VERSION",
    "VERSIONS",
    "Ack",
    "Alert",
    "Box",
    "ClassList",
    "Classes",
    "Codec",
    "DropReason",
    "Header",
    "Heartbeat",
    "Hello",
    "HelloAck",
    "Message",
    "MessageType",
    "Meta",
    "ProtocolError",
    "Result",
    "ResultStatus",
    "bitmap",
    "bits",
    "crc16",
    "crc32",
    "decode_header",
    "decode_token",
    "encode",
    "max_token",
]

HEADER = struct.Struct("<BBBBIIHHIQBB")  # everything before the header CRC
HEADER_SIZE = HEADER.size + 2  # 32
TRAILER_SIZE = 4
DELIMITER = b"\x00"

# Incompatible flags: a receiver that does not know one must refuse the message.
INCOMPAT_KNOWN = 0x00
# Compatible flags: a receiver that does not know one ignores it.
COMPAT_RETRANSMIT = 0x01  # this chunk or META is a resend


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
    CLASSES = 10  # host -> recorder (v2): the names of the class ids RESULT uses
    ALERT = 11  # host -> recorder (v2, CAP_ALERTS): a finding confirmed over several frames


_TYPES = {int(t): t for t in MessageType}


class Codec(enum.IntEnum):
    RAW_RGB = 0
    JPEG = 1
    PNG = 2
    RAW_BAYER = 3


# Encoded image files a recorder (or a replay) sends as they are.
CODEC_BY_SUFFIX = {".jpg": Codec.JPEG, ".jpeg": Codec.JPEG, ".png": Codec.PNG}


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
    if version not in VERSIONS:
        raise ProtocolError(
            "version", f"protocol version {version}, this side speaks {VERSIONS[0]}..{VERSION}"
        )
    if incompat & ~INCOMPAT_KNOWN:
        raise ProtocolError("incompat", f"unknown incompatible flags 0x{incompat:02x}")
    kind = _TYPES.get(mtype)
    if kind is None or (kind in (MessageType.CLASSES, MessageType.ALERT) and version < 2):
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
