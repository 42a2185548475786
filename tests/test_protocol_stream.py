"""The stream decoder (firmware_bridge.stream) against garbage at any split point,
noise, refused headers, bit flips and cuts: errors only, never a hidden message."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol
from firmware_bridge.protocol import (
    HEADER_SIZE,
    Header,
    Message,
    MessageType,
    encode,
)
from firmware_bridge.stream import LinkError, StreamDecoder
from tests.protocol_helpers import (
    FAST,
    cobs_data,
    cobs_ref,
    crc32c_ref,
    errors,
    feed_all,
    headers,
    messages,
    wire,
    with_crc,
)

# 3. Garbage and valid messages at arbitrary split points --------------------------------


@st.composite
def streams(draw: st.DrawFn, max_payload: int) -> tuple[bytes, list[Message], list[int]]:
    """Garbage (any bytes, zeros included) interleaved with valid messages."""
    garbage = st.binary(max_size=3 * max_payload) | cobs_data.filter(lambda b: len(b) < 1500)
    parts: list[bytes] = []
    sent: list[Message] = []
    for _ in range(draw(st.integers(0, 6))):
        parts.append(draw(garbage))
        header = draw(headers)
        payload = draw(st.binary(max_size=max_payload))
        parts.append(encode(header, payload))
        sent.append(Message(header._replace(length=len(payload)), payload))
    parts.append(draw(garbage))
    data = b"".join(parts)
    splits = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return data, sent, splits


@pytest.mark.parametrize("max_payload", [8, 64, 4096])
@settings(max_examples=120, **FAST)
@given(data=st.data())
def test_garbage_never_raises_and_never_hides_a_message(max_payload: int, data: st.DataObject):
    stream, sent, splits = data.draw(streams(max_payload))
    decoder = StreamDecoder(max_payload)
    events = feed_all(decoder, stream, splits)
    # Each message's leading delimiter ends whatever garbage came before it.
    assert messages(events) == sent
    assert decoder.counters.messages == len(sent)
    assert decoder.counters.bytes_in == len(stream)


@settings(max_examples=150, **FAST)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_pure_garbage_never_raises(stream: bytes, splits: list[int]):
    decoder = StreamDecoder(64)
    events = feed_all(decoder, stream, splits)
    assert not messages(events)
    # Every non-delimiter byte is either thrown away (and counted) or still buffered.
    assert decoder.counters.discarded_bytes + decoder.buffered == len(stream) - stream.count(0)


def test_split_points_do_not_change_the_outcome():
    rng = random.Random(3)
    parts = []
    for i in range(20):
        parts += [
            rng.randbytes(rng.randrange(300)),
            encode(Header(MessageType.CHUNK, frame=i), rng.randbytes(rng.randrange(1024))),
        ]
    stream = b"".join(parts)
    whole = StreamDecoder(1024)
    reference = feed_all(whole, stream)
    byte_by_byte = StreamDecoder(1024)
    assert feed_all(byte_by_byte, stream, range(len(stream))) == reference
    assert byte_by_byte.counters == whole.counters
    assert [m.header.frame for m in messages(reference)] == list(range(20))


# 4. Resync and bounded memory ----------------------------------------------------------


@pytest.mark.slow
def test_fifty_megabytes_of_noise_then_a_message():
    noise = random.Random(20240611).randbytes(50_000_000)
    payload = random.Random(1).randbytes(30_000)
    header = Header(MessageType.CHUNK, session=5, frame=77, chunk=1, chunks=2)
    stream = noise + encode(header, payload)

    decoder = StreamDecoder(max_payload=32768)
    events = feed_all(decoder, stream, range(0, len(stream), 65536))

    assert messages(events) == [Message(header._replace(length=30_000), payload)]
    assert isinstance(events[-1], Message)
    counters = decoder.counters
    assert counters.bytes_in == len(stream)
    assert counters.messages == 1
    # Random bytes hold a zero every 256 bytes or so: some 195 000 failed tokens.
    assert len(errors(events)) == counters.resyncs > 100_000
    assert counters.errors["cobs"] > 0
    # Every noise byte that is not a delimiter was thrown away, and counted.
    assert counters.discarded_bytes == len(noise) - noise.count(0)


def test_delimiter_less_run_is_discarded_as_it_arrives():
    run = random.Random(9).randbytes(10_000_000).replace(b"\x00", b"\x5a")
    header = Header(MessageType.CHUNK, frame=3)
    # 10 MB is no multiple of 64 KiB: the last read holds the run's tail and the message.
    stream = run + encode(header, b"after the flood")
    decoder = StreamDecoder(max_payload=32768)
    events = feed_all(decoder, stream, range(0, len(stream), 65536))
    assert messages(events) == [Message(header._replace(length=15), b"after the flood")]
    # One run, one resync: the whole run is dropped as a single overlong token.
    assert decoder.counters.errors == {"overlong": 1}
    assert decoder.counters.discarded_bytes == len(run)
    assert decoder.buffered == 0


@pytest.mark.parametrize("max_payload", [0, 1, 16, 253, 254, 1024, 16384, 65536])
def test_largest_payload_fits_max_token(max_payload: int):
    # Worst case for COBS: no zero anywhere, one extra byte per 254.
    raw = HEADER_SIZE + max_payload + protocol.TRAILER_SIZE
    assert len(cobs_ref(b"\x01" * raw)) <= protocol.max_token(max_payload)
    header = Header(MessageType.CHUNK, session=0x01010101, frame=0xFFFFFFFF)
    payload = b"\xff" * max_payload
    decoder = StreamDecoder(max_payload)
    assert feed_all(decoder, encode(header, payload)) == [
        Message(header._replace(length=max_payload), payload)
    ]


def test_overlong_token_within_one_read_is_reported():
    decoder = StreamDecoder(max_payload=16)
    events = decoder.feed(b"\x00" + b"\x07" * (decoder.max_token + 1) + b"\x00")
    assert [e.kind for e in errors(events)] == ["overlong"]
    assert decoder.counters.errors["overlong"] == 1


def test_overlong_run_across_reads_is_reported():
    decoder = StreamDecoder(max_payload=16)
    run = b"\x07" * 10 * decoder.max_token
    events = feed_all(decoder, run + b"\x00", [5 * decoder.max_token])
    assert decoder.counters.errors["overlong"] == 1
    assert [e.kind for e in errors(events)] == ["overlong"]


# 5. Headers the host must refuse, or accept --------------------------------------------


def raw_message(header: Header, payload: bytes, trailer: bytes | None = None) -> bytes:
    """header.pack() (its own CRC-16 correct) | payload | trailer, framed by hand; the
    trailer defaults to the correct CRC-32C."""
    body = header.pack() + payload
    return wire(body + (trailer if trailer is not None else struct.pack("<I", crc32c_ref(body))))


GOOD = Header(MessageType.HEARTBEAT, session=1, frame=2, chunk=3, chunks=4)


@pytest.mark.parametrize(
    ("wire_bytes", "kind"),
    [
        (
            raw_message(GOOD._replace(length=0xFFFFFFFF), b"abc", b"\xde\xad"),
            "oversize",
        ),
        (raw_message(GOOD._replace(length=4097), b"abc"), "oversize"),
        (raw_message(GOOD._replace(version=3), b""), "version"),
        (raw_message(GOOD._replace(version=0), b""), "version"),
        (raw_message(GOOD._replace(incompat=0x80), b""), "incompat"),
        (raw_message(GOOD._replace(incompat=0x01), b""), "incompat"),
        (raw_message(GOOD._replace(type=200), b""), "type"),  # type: ignore[arg-type]
        (raw_message(GOOD._replace(type=0), b""), "type"),  # type: ignore[arg-type]
        (wire(b"\x01" * 31), "short"),
        (wire(GOOD.pack()[:-1] + bytes([GOOD.pack()[-1] ^ 1])), "header_crc"),
        (b"\x00\x05\x01\x00", "cobs"),
    ],
    ids=[
        "length-4GiB",
        "length-max+1",
        "version-3",
        "version-0",
        "incompat-0x80",
        "incompat-0x01",
        "type-200",
        "type-0",
        "short",
        "header-crc",
        "cobs",
    ],
)
def test_refused_header(wire_bytes: bytes, kind: str):
    decoder = StreamDecoder(max_payload=4096)
    after = encode(GOOD, b"\x01\x02\x03\x04")
    events = feed_all(decoder, wire_bytes + after)
    assert [e.kind for e in errors(events)] == [kind]
    assert decoder.counters.errors == {kind: 1}
    assert messages(events) == [Message(GOOD._replace(length=4), b"\x01\x02\x03\x04")]


def test_header_claiming_four_gibibytes_is_refused_before_reading_the_payload():
    header = GOOD._replace(type=MessageType.CHUNK, length=0xFFFFFFFF)
    decoder = StreamDecoder(max_payload=4096)
    (error,) = feed_all(decoder, raw_message(header, b"abc", b"\xde\xad\xbe\xef"))
    assert isinstance(error, LinkError)
    assert error.kind == "oversize"
    assert "4294967295" in error.message and "4096" in error.message
    assert decoder.counters.errors == {"oversize": 1}
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        (lambda raw: raw[:-4] + bytes(4), "crc"),  # wrong trailer
        (lambda raw: raw[:40] + bytes([raw[40] ^ 0x10]) + raw[41:], "crc"),  # payload bit
        (lambda raw: raw + b"\x55", "length"),  # one byte more than the header says
        (lambda raw: raw[:-5] + raw[-4:], "truncated"),  # one payload byte missing
    ],
    ids=["trailer", "payload-bit", "long", "short-by-one"],
)
def test_sound_header_is_reported_with_the_error(tamper: Callable[[bytes], bytes], kind: str):
    header = Header(MessageType.CHUNK, session=9, frame=1234, chunk=5, chunks=6, length=16)
    raw = with_crc(header.pack() + bytes(range(1, 17)))
    decoder = StreamDecoder(max_payload=4096)
    (event,) = feed_all(decoder, wire(tamper(raw)))
    assert isinstance(event, LinkError)
    assert event.kind == kind
    assert event.header == header


def test_unknown_compatible_flag_is_accepted():
    header = GOOD._replace(compat=0x80 | protocol.COMPAT_RETRANSMIT)
    decoder = StreamDecoder(max_payload=4096)
    events = feed_all(decoder, raw_message(header._replace(length=2), b"ok"))
    assert events == [Message(header._replace(length=2), b"ok")]
    assert events[0].header.compat == 0x81


# 6. Single bit flips -------------------------------------------------------------------


def chunk_with_structure() -> tuple[Header, bytes]:
    """A CHUNK whose COBS token has short blocks, a 0xFF block and a long final block."""
    rng = random.Random(6)
    payload = (
        rng.randbytes(120).replace(b"\0", b"\1")
        + b"\x00\x00"
        + rng.randbytes(300).replace(b"\0", b"\2")  # forces a 254-byte block
        + bytes([0, 7, 0, 9, 0])
        + rng.randbytes(200)
    )
    header = Header(MessageType.CHUNK, session=3, frame=99, chunk=2, chunks=7, codec=1)
    return header._replace(length=len(payload)), payload


def test_every_single_bit_flip_is_caught_and_the_next_message_survives():
    header, payload = chunk_with_structure()
    damaged_source = encode(header, payload)
    assert b"\xff" in damaged_source  # the structure asked for is there
    following = Message(Header(MessageType.HEARTBEAT, session=3, length=4), b"\x64\x00\x00\x00")
    after = encode(following.header, following.payload)

    kinds: set[str] = set()
    for bit in range(len(damaged_source) * 8):
        flipped = bytearray(damaged_source)
        flipped[bit // 8] ^= 1 << (bit % 8)
        decoder = StreamDecoder(max_payload=4096)
        events = feed_all(decoder, bytes(flipped) + after)
        *damaged, last = events
        assert last == following, f"bit {bit}: {events}"
        assert damaged, f"bit {bit}: the flip went unnoticed"
        assert all(isinstance(e, LinkError) for e in damaged), f"bit {bit}: {damaged}"
        assert decoder.counters.resyncs == len(damaged)
        kinds.update(e.kind for e in damaged)
    # Flips are caught at every layer, not by one check alone.
    assert {"cobs", "header_crc", "crc"} <= kinds


# 7. Cuts -------------------------------------------------------------------------------

FOLLOWING = Message(Header(MessageType.CHUNK, session=4, frame=321, chunk=12, length=3), b"end")


def cut_payloads() -> dict[str, bytes]:
    rng = random.Random(7)
    return {
        # Zeros every 40 bytes: the COBS token is made of short blocks.
        "short-blocks": b"".join(
            rng.randbytes(39).replace(b"\0", b"\3") + b"\0" for _ in range(25)
        ),
        # No zero at all: 0xFF blocks, cut anywhere inside them.
        "long-blocks": rng.randbytes(1000).replace(b"\0", b"\4"),
    }


@pytest.fixture(params=["short-blocks", "long-blocks"])
def cut_case(request: pytest.FixtureRequest) -> tuple[Header, bytes]:
    payload = cut_payloads()[request.param]
    header = Header(MessageType.CHUNK, session=4, frame=321, chunk=11, chunks=12, length=1000)
    return header, encode(header, payload)


def test_any_cut_yields_errors_only_and_the_next_message_decodes(cut_case):
    _, whole = cut_case
    after = encode(FOLLOWING.header, FOLLOWING.payload)
    for cut in range(1, len(whole) - 1):  # drops at least the closing delimiter
        decoder = StreamDecoder(max_payload=4096)
        events = feed_all(decoder, whole[:cut] + after)
        *damaged, last = events
        assert last == FOLLOWING, f"cut {cut}: {events}"
        assert all(isinstance(e, LinkError) for e in damaged), f"cut {cut}: {damaged}"
        assert len(damaged) == (cut > 1)


def test_cut_after_the_header_is_truncated_and_names_the_chunk(cut_case):
    header, whole = cut_case
    after = encode(FOLLOWING.header, FOLLOWING.payload)
    # The header's 32 bytes take 33 token bytes (one code byte, no 0xFF block yet): a
    # token cut one byte later still holds the whole header.
    first = 1 + len(cobs_ref(header.pack())) + 1
    assert first == 35
    for cut in range(first, len(whole) - 1):
        decoder = StreamDecoder(max_payload=4096)
        events = feed_all(decoder, whole[:cut] + after)
        assert events[1:] == [FOLLOWING], f"cut {cut}: {events}"
        error = events[0]
        assert isinstance(error, LinkError)
        assert (error.kind, error.header) == ("truncated", header), f"cut {cut}: {error}"
        assert (error.header.frame, error.header.chunk) == (321, 11)
