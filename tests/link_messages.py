"""Hand-built link messages for HostLink tests: exact sequences, exact damage."""

from __future__ import annotations

import struct

from cobs import cobs

from firmware_bridge.host import HostLink
from firmware_bridge.protocol import (
    CAP_RETRANSMIT,
    COMPAT_RETRANSMIT,
    VERSION,
    Ack,
    Classes,
    Header,
    Heartbeat,
    Hello,
    HelloAck,
    Message,
    MessageType,
    Meta,
    Result,
    bits,
    crc32,
    encode,
)
from firmware_bridge.stream import LinkError, StreamDecoder

S = 1024  # chunk size in these tests


def hello(session: int, base: int = 0, max_chunk: int = S, version: int = VERSION) -> bytes:
    payload = Hello(max_chunk, 64, "test", CAP_RETRANSMIT, base, base).pack()
    return encode(Header(MessageType.HELLO, session=session, version=version), payload)


def frame_data(index: int, chunks: int) -> bytes:
    return bytes([index % 251 + 1]) * (S * chunks - 10)


def chunk(session: int, index: int, i: int, chunks: int, resend: bool = False) -> bytes:
    size = S if i + 1 < chunks else S - 10
    payload = bytes([index % 251 + 1]) * size
    header = Header(
        MessageType.CHUNK,
        session=session,
        frame=index,
        chunk=i,
        chunks=chunks,
        compat=COMPAT_RETRANSMIT if resend else 0,
    )
    return encode(header, payload)


def meta(session: int, index: int, chunks: int, resend: bool = False) -> bytes:
    data = frame_data(index, chunks)
    header = Header(
        MessageType.META,
        session=session,
        frame=index,
        chunks=chunks,
        compat=COMPAT_RETRANSMIT if resend else 0,
    )
    return encode(header, Meta(len(data), crc32(data)).pack())


def frame(session: int, index: int, chunks: int) -> bytes:
    return b"".join(chunk(session, index, i, chunks) for i in range(chunks)) + meta(
        session, index, chunks
    )


def damaged(message: bytes) -> bytes:
    """The same message with its CRC-32C wrong: the header stays sound (kind ``crc``)."""
    raw = cobs.decode(message[1:-1])
    return (
        b"\x00" + cobs.encode(raw[:-4] + struct.pack("<I", ~crc32(raw[:-4]) & 0xFFFFFFFF)) + b"\x00"
    )


def heartbeat(session: int, next_unsent: int, flags: int = 0, version: int = VERSION) -> bytes:
    header = Header(MessageType.HEARTBEAT, session=session, version=version)
    return encode(header, Heartbeat(next_unsent, flags).pack(version))


def replies(link: HostLink) -> list[Message]:
    decoder = StreamDecoder(4096)
    out = [e for e in decoder.feed(link.outgoing()) if not isinstance(e, LinkError)]
    assert not decoder.counters.errors
    return out


def requests(messages: list[Message]) -> list[tuple[str, dict[int, list[int] | str]]]:
    """ACKs and NACKs as (type, {frame: pieces asked, or "whole"}); entries only."""
    out = []
    for m in messages:
        if m.type in (MessageType.ACK, MessageType.NACK):
            ack = Ack.unpack(m.payload)
            asked: dict[int, list[int] | str] = {
                f: bits(b, count) if count else "whole" for f, (count, b) in ack.missing.items()
            }
            out.append((m.type.name, asked))
    return out


def asked(messages: list[Message]) -> dict[int, list[int] | str]:
    """Every piece asked for in these replies, merged."""
    merged: dict[int, list[int] | str] = {}
    for _, entries in requests(messages):
        for f, pieces in entries.items():
            if pieces == "whole" or merged.get(f) == "whole":
                merged[f] = "whole"
            else:
                merged[f] = sorted([*merged.get(f, []), *pieces])  # type: ignore[misc]
    return merged


def of_type(messages: list[Message], kind: MessageType) -> list[Message]:
    return [m for m in messages if m.type == kind]


def hello_ack(messages: list[Message]) -> HelloAck:
    (m,) = of_type(messages, MessageType.HELLO_ACK)
    return HelloAck.unpack(m.payload, m.header.version)


def results(messages: list[Message]) -> list[tuple[int, Result]]:
    return [
        (m.header.frame, Result.unpack(m.payload, m.header.version))
        for m in of_type(messages, MessageType.RESULT)
    ]


def classes(messages: list[Message]) -> list[Classes]:
    return [Classes.unpack(m.payload) for m in of_type(messages, MessageType.CLASSES)]
