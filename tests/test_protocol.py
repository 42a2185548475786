"""The recorder link's wire format (firmware_bridge.protocol) and its stream decoder
(firmware_bridge.stream), checked against slow reference implementations written here
and against noise, bit flips and cuts."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from cobs import cobs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol
from firmware_bridge.protocol import (
    HEADER_SIZE,
    MAX_CHUNKS_PER_FRAME,
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
    Result,
    encode,
)
from firmware_bridge.stream import StreamDecoder
from tests.protocol_helpers import (
    FAST,
    U8,
    U16,
    U32,
    cobs_data,
    cobs_ref,
    crc16_ref,
    crc32c_ref,
    feed_all,
    header_ref,
    headers,
)

# 1. CRCs and framing against the references ---------------------------------------------


def test_check_values():
    assert crc16_ref(b"123456789") == 0x29B1
    assert crc32c_ref(b"123456789") == 0xE3069283
    assert protocol.crc16(b"123456789") == 0x29B1
    assert protocol.crc32(b"123456789") == 0xE3069283


@settings(max_examples=200, **FAST)
@given(st.binary(max_size=300), st.binary(max_size=50))
def test_crcs_agree_with_reference(data: bytes, more: bytes):
    assert protocol.crc16(data) == crc16_ref(data)
    assert protocol.crc32(data) == crc32c_ref(data)
    # The running form (``value``) continues a CRC over a second piece.
    assert protocol.crc32(more, protocol.crc32(data)) == crc32c_ref(data + more)


@settings(max_examples=200, **FAST)
@given(cobs_data)
@example(b"")
@example(b"\x00")
@example(b"\x01" * 253)
@example(b"\x01" * 254)
@example(b"\x01" * 254 + b"\x00")
@example(b"\x01" * 255)
@example(b"\x01" * 508)
def test_cobs_reference_agrees_with_library(data: bytes):
    token = cobs_ref(data)
    assert b"\x00" not in token
    assert cobs.encode(data) == token
    assert cobs.decode(token) == data


@settings(max_examples=150, **FAST)
@given(headers, st.binary(max_size=1200) | cobs_data.filter(lambda b: len(b) <= 1200))
def test_encode_framing_byte_for_byte(header: Header, payload: bytes):
    sized = header._replace(length=len(payload))
    head = header_ref(sized)
    assert len(head) == HEADER_SIZE == 32
    assert sized.pack() == head
    body = head + payload
    expected = b"\x00" + cobs_ref(body + struct.pack("<I", crc32c_ref(body))) + b"\x00"
    assert encode(header, payload) == expected
    assert len(expected) - 2 <= protocol.max_token(len(payload))


# 2. Every message type survives encode -> stream -> unpack ------------------------------


def confidence() -> st.SearchStrategy[float]:
    """Scores on the wire's 1/65535 grid, so they survive quantisation exactly."""
    return U16.map(lambda k: k / 65535)


@st.composite
def open_frames(draw: st.DrawFn) -> dict[int, tuple[int, bytes]]:
    frames = draw(st.dictionaries(U32, st.integers(0, MAX_CHUNKS_PER_FRAME), max_size=4))
    return {
        index: (count, draw(st.binary(min_size=(count + 7) // 8, max_size=(count + 7) // 8)))
        for index, count in frames.items()
    }


boxes = st.tuples(U16, U16, U16, U16, confidence())

# type -> (payload values, pack, unpack); unpack(pack(value)) must give value back.
PAYLOADS: dict[MessageType, tuple[st.SearchStrategy, Callable, Callable]] = {
    MessageType.HELLO: (
        # 63 characters are at most 252 UTF-8 bytes: under the 255-byte name limit.
        st.builds(Hello, U16, U16, st.text(max_size=63), U16, U32, U32),
        Hello.pack,
        Hello.unpack,
    ),
    MessageType.HELLO_ACK: (
        st.builds(HelloAck, U16, U16, U32, U32, U16),
        HelloAck.pack,
        HelloAck.unpack,
    ),
    MessageType.CHUNK: (st.binary(max_size=1024), bytes, bytes),
    MessageType.META: (st.builds(Meta, U32, U32, U16, U16, U16, U16), Meta.pack, Meta.unpack),
    MessageType.ACK: (st.builds(Ack, U32, U16, open_frames()), Ack.pack, Ack.unpack),
    MessageType.NACK: (st.builds(Ack, U32, U16, open_frames()), Ack.pack, Ack.unpack),
    MessageType.DROP: (
        st.sampled_from(DropReason),
        lambda r: protocol.DROP.pack(r),
        lambda p: DropReason(protocol.DROP.unpack(p)[0]),
    ),
    MessageType.HEARTBEAT: (st.builds(Heartbeat, U32, U8), Heartbeat.pack, Heartbeat.unpack),
    MessageType.RESULT: (
        st.builds(
            Result,
            U16,
            confidence(),
            st.lists(boxes | st.tuples(U16, U16, U16, U16, confidence(), U16), max_size=8).map(
                tuple
            ),
            U8,
        ),
        Result.pack,
        Result.unpack,
    ),
    MessageType.CLASSES: (
        st.lists(st.text(max_size=20), max_size=40).flatmap(
            lambda names: st.builds(
                Classes,
                st.sampled_from(ClassList),
                st.just(len(names) + 3),
                st.just(3),
                st.just(tuple(names)),
            )
        ),
        Classes.pack,
        Classes.unpack,
    ),
    MessageType.ALERT: (
        # Scores and shares are carried in 1/65535 steps: values on that grid come back.
        st.builds(
            Alert,
            U32,
            U16,
            U32,
            U16,
            U16.map(lambda v: v / 65535),
            U16,
            U16,
            U16.map(lambda v: v / 65535),
        ),
        Alert.pack,
        Alert.unpack,
    ),
}


def test_every_message_type_has_a_payload_case():
    assert set(PAYLOADS) == set(MessageType)


@pytest.mark.parametrize("mtype", list(MessageType), ids=lambda t: t.name)
@settings(max_examples=40, **FAST)
@given(data=st.data())
def test_round_trip(mtype: MessageType, data: st.DataObject):
    values, pack, unpack = PAYLOADS[mtype]
    header = data.draw(headers.map(lambda h: h._replace(type=mtype)))
    value = data.draw(values)
    payload = pack(value)
    wire_bytes = encode(header, payload)
    splits = data.draw(st.lists(st.integers(0, len(wire_bytes)), max_size=4))

    decoder = StreamDecoder(max_payload=4096)
    events = feed_all(decoder, wire_bytes, splits)

    assert len(events) == 1 and isinstance(events[0], Message), events
    message = events[0]
    assert message.header == header._replace(length=len(payload))
    assert message.type == mtype
    assert message.payload == payload
    assert unpack(message.payload) == value
    assert decoder.counters.messages == 1
    assert not decoder.counters.errors
    assert decoder.counters.bytes_in == len(wire_bytes)


def test_ack_bitmaps_helpers():
    indices = {0, 3, 8, 17}
    packed = protocol.bitmap(indices, 18)
    assert packed == bytes([0b0000_1001, 0b0000_0001, 0b0000_0010])
    assert protocol.bits(packed, 18) == sorted(indices)
    ack = Ack(protocol.NO_FRAME, 3, {7: (18, packed), 9: (0, b"")})
    assert Ack.unpack(ack.pack()) == ack
