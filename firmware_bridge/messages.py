"""The payloads of the link's messages (docs/protocol.md section 4): pure, no state.

``firmware_bridge.protocol`` re-exports every name here; import from there. Payloads
whose layout changed in protocol version 2 take the session's ``version`` when packed
and unpacked (HELLO_ACK, HEARTBEAT, RESULT); CLASSES exists from version 2 on.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

VERSION = 2  # what this side speaks and sends in a session it starts
VERSIONS = (1, 2)  # what it accepts: a v2 host serves a v1 recorder in v1
NO_FRAME = 0xFFFFFFFF
NO_CLASS = 0xFFFF  # RESULT and box class id: no class
CONTROL_PAYLOAD = 4096  # every host -> recorder message fits in this


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``kind`` names the counter it goes to.

    ``header`` is set when the header itself was sound (its CRC-16 matched): the receiver
    then knows which frame and chunk were damaged and can ask for them at once.
    """

    def __init__(self, kind: str, message: str, header: object | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.header = header


class DropReason(enum.IntEnum):
    BACKPRESSURE = 1  # captured while the host had no credits (policy "drop")
    EVICTED = 2  # asked for a frame the recorder no longer holds
    SENSOR_ERROR = 3
    RECORDER_FULL = 4
    TOO_LARGE = 5  # v2: beyond the host's max frame size (HELLO_ACK) or 4096 chunks
    OTHER = 255


class ResultStatus(enum.IntEnum):
    """Why a RESULT says what it says (v2). A recorder treats an unknown value as
    "no findings for this frame" (later versions may add some)."""

    OK = 0  # inferred: class and boxes as found (none found is an OK with no boxes)
    UNDECODABLE = 1  # stored as received, but not an image the host can infer
    FAILED = 2  # inference failed on this frame
    SKIPPED = 3  # not inferred in time to be live (the host's backlog policy)


class ClassList(enum.IntEnum):
    FRAME = 0  # the names of RESULT class_id
    BOX = 1  # the names of a box's class_id


HELLO = struct.Struct("<HHHIIH")  # max chunk, window, capabilities, base, next, name length
CAP_RETRANSMIT = 0x0001  # the recorder resends what the host asks for
CAP_ALERTS = 0x0002  # (v2) the recorder takes ALERT messages
HELLO_ACK = struct.Struct("<HHI")  # chunk size, credits, resume (next frame wanted)
HELLO_ACK_V2 = struct.Struct("<HHIIH")  # ... max frame size, flags
ACK_RESULTS = 0x0001  # HELLO_ACK flag: one RESULT will come for every frame delivered
META = struct.Struct("<IIHHHHB")  # size, crc32c, width, height, sensor status, battery mV, n/a
ACK = struct.Struct("<IHB")  # highest contiguous (NO_FRAME: none), credits, open frames
OPEN_FRAME = struct.Struct("<IH")  # frame index, chunk count; bitmap follows
DROP = struct.Struct("<B")
HEARTBEAT = struct.Struct("<I")  # next frame index the recorder will send
HEARTBEAT_V2 = struct.Struct("<IB")  # ... and flags
HB_NEED_CLASSES = 0x01  # heartbeat flag: the recorder lacks class names, send CLASSES
RESULT_HEAD = struct.Struct("<HHB")  # v1: class id, confidence x 65535, box count
RESULT_BOX = struct.Struct("<HHHHH")  # v1: x0, y0, x1, y1 (pixels), score x 65535
RESULT_HEAD_V2 = struct.Struct("<BHHB")  # status, class id, confidence, box count
RESULT_BOX_V2 = struct.Struct("<HHHHHH")  # x0, y0, x1, y1, score, class id
CLASSES = struct.Struct("<BHHB")  # list, total names, index of the first here, names here
ALERT = struct.Struct("<IHIHHHHH")  # event, class, first frame, frames, peak, box w, h, share
MAX_BOXES = 255
MAX_NAME = 255  # bytes of one class name (UTF-8, cut on a character boundary)


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise ProtocolError("payload", f"{what} payload of {len(data)} bytes, needs {size}")


def _utf8(text: str, limit: int = 255) -> bytes:
    """At most ``limit`` bytes of UTF-8, cut on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8")


@dataclass(frozen=True)
class Hello:
    max_chunk: int
    window: int
    name: str = ""
    capabilities: int = CAP_RETRANSMIT
    base: int = 0  # the lowest frame index the recorder still holds (or has not sent)
    next: int = 0  # the next frame index it will capture

    def pack(self) -> bytes:
        name = _utf8(self.name)
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
    max_frame: int = 0  # v2: the largest frame the host takes, bytes (0 in v1)
    flags: int = 0  # v2: ACK_RESULTS

    def pack(self, version: int = VERSION) -> bytes:
        if version < 2:
            return HELLO_ACK.pack(self.chunk_size, self.credits, self.resume)
        return HELLO_ACK_V2.pack(
            self.chunk_size, self.credits, self.resume, self.max_frame, self.flags
        )

    @classmethod
    def unpack(cls, data: bytes, version: int = VERSION) -> HelloAck:
        if version < 2:
            _need(data, HELLO_ACK.size, "HELLO_ACK")
            return cls(*HELLO_ACK.unpack_from(data))
        _need(data, HELLO_ACK_V2.size, "HELLO_ACK")
        return cls(*HELLO_ACK_V2.unpack_from(data))


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
    # open frame -> (chunk count + 1, bitmap of pieces missing; 0: the whole frame)

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


def bitmap(indices: Iterable[int], count: int) -> bytes:
    out = bytearray((count + 7) // 8)
    for i in indices:
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def bits(data: bytes, count: int) -> list[int]:
    return [i for i in range(count) if data[i // 8] >> (i % 8) & 1]


@dataclass(frozen=True)
class Heartbeat:
    next_unsent: int  # every index below this has been sent completely, or dropped
    flags: int = 0  # v2: HB_NEED_CLASSES

    def pack(self, version: int = VERSION) -> bytes:
        if version < 2:
            return HEARTBEAT.pack(self.next_unsent)
        return HEARTBEAT_V2.pack(self.next_unsent, self.flags)

    @classmethod
    def unpack(cls, data: bytes) -> Heartbeat:
        """Lenient, as the host reads it: missing bytes read as 0."""
        padded = bytes(data[: HEARTBEAT_V2.size]).ljust(HEARTBEAT_V2.size, b"\0")
        return cls(*HEARTBEAT_V2.unpack(padded))


class Box(NamedTuple):
    x0: int  # left, pixels, inclusive
    y0: int  # top, inclusive
    x1: int  # right, exclusive (x1 - x0 is the width)
    y1: int  # bottom, exclusive
    score: float
    class_id: int = NO_CLASS  # index into the host's box class list (CLASSES list 1)


def _unit(value: float) -> int:
    """A 0-1 score as a u16 fraction of 65535 (clamped)."""
    return round(min(max(value, 0.0), 1.0) * 65535)


def _u16(value: float) -> int:
    return min(max(round(value), 0), 0xFFFF)


@dataclass(frozen=True)
class Result:
    """Findings for one frame. ``boxes`` may be given as 5-tuples (x0, y0, x1, y1,
    score: no class) or 6-tuples (..., class_id); they are kept as ``Box``."""

    class_id: int
    confidence: float
    boxes: tuple[Box, ...] = ()
    status: int = ResultStatus.OK

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", tuple(Box(*b) for b in self.boxes))

    @classmethod
    def none(cls, status: ResultStatus) -> Result:
        """A frame with no findings and why: UNDECODABLE, FAILED or SKIPPED."""
        return cls(NO_CLASS, 0.0, (), status)

    def pack(self, version: int = VERSION) -> bytes:
        n = min(len(self.boxes), MAX_BOXES)
        if version < 2:
            head = RESULT_HEAD.pack(_u16(self.class_id), _unit(self.confidence), n)
            return head + b"".join(
                RESULT_BOX.pack(_u16(b.x0), _u16(b.y0), _u16(b.x1), _u16(b.y1), _unit(b.score))
                for b in self.boxes[:n]
            )
        head = RESULT_HEAD_V2.pack(int(self.status), _u16(self.class_id), _unit(self.confidence), n)
        return head + b"".join(
            RESULT_BOX_V2.pack(
                _u16(b.x0), _u16(b.y0), _u16(b.x1), _u16(b.y1), _unit(b.score), _u16(b.class_id)
            )
            for b in self.boxes[:n]
        )

    @classmethod
    def unpack(cls, data: bytes, version: int = VERSION) -> Result:
        if version < 2:
            _need(data, RESULT_HEAD.size, "RESULT")
            class_id, conf, n = RESULT_HEAD.unpack_from(data)
            status, head, box = int(ResultStatus.OK), RESULT_HEAD.size, RESULT_BOX
        else:
            _need(data, RESULT_HEAD_V2.size, "RESULT")
            status, class_id, conf, n = RESULT_HEAD_V2.unpack_from(data)
            head, box = RESULT_HEAD_V2.size, RESULT_BOX_V2
        _need(data, head + n * box.size, "RESULT boxes")
        boxes = []
        for i in range(n):
            x0, y0, x1, y1, score, *cls_id = box.unpack_from(data, head + i * box.size)
            boxes.append(Box(x0, y0, x1, y1, score / 65535, *cls_id))
        known = status in ResultStatus._value2member_map_
        return cls(class_id, conf / 65535, tuple(boxes), ResultStatus(status) if known else status)


@dataclass(frozen=True)
class Classes:
    """Part of a class list (v2): names ``first`` .. ``first + len(names) - 1`` of list
    ``kind`` (ClassList), ``total`` names long. ``first`` 0 starts the list afresh."""

    kind: int  # ClassList: which list
    total: int
    first: int = 0
    names: tuple[str, ...] = ()

    def pack(self) -> bytes:
        head = CLASSES.pack(self.kind, self.total, self.first, len(self.names))
        return head + b"".join(bytes([len(n)]) + n for n in map(lambda s: _utf8(s), self.names))

    @classmethod
    def unpack(cls, data: bytes) -> Classes:
        _need(data, CLASSES.size, "CLASSES")
        kind, total, first, n = CLASSES.unpack_from(data)
        offset, names = CLASSES.size, []
        for _ in range(n):
            _need(data, offset + 1, "CLASSES name")
            size = data[offset]
            _need(data, offset + 1 + size, "CLASSES name")
            names.append(bytes(data[offset + 1 : offset + 1 + size]).decode("utf-8", "replace"))
            offset += 1 + size
        if first + n > total:
            raise ProtocolError("payload", f"CLASSES names {first}..{first + n - 1} of {total}")
        return cls(kind, total, first, tuple(names))

    @staticmethod
    def split(kind: int, names: Sequence[str], limit: int = CONTROL_PAYLOAD) -> list[Classes]:
        """The CLASSES messages that carry ``names``, each payload at most ``limit``
        bytes (at least one message, also for an empty list)."""
        if len(names) > 0xFFFF:
            raise ValueError(f"{len(names)} class names: at most 65535")
        out: list[Classes] = []
        first, size = 0, CLASSES.size
        here: list[str] = []
        for i, name in enumerate(names):
            cost = 1 + len(_utf8(name))
            if here and (size + cost > limit or len(here) == 255):
                out.append(Classes(kind, len(names), first, tuple(here)))
                first, size, here = i, CLASSES.size, []
            here.append(name)
            size += cost
        out.append(Classes(kind, len(names), first, tuple(here)))
        return out


@dataclass(frozen=True)
class Alert:
    """A finding confirmed (v2, to a recorder with CAP_ALERTS): event ``event`` of class
    ``class_id`` (an index into CLASSES list 1), first seen in frame ``first``, in
    ``frames`` frames so far; its peak score, its largest box in pixels and that box's
    share of the field of view. The header's ``frame`` is the frame that confirmed it."""

    event: int
    class_id: int
    first: int
    frames: int
    peak_score: float
    box_w: int
    box_h: int
    box_share: float

    def pack(self) -> bytes:
        return ALERT.pack(
            self.event & 0xFFFFFFFF,
            _u16(self.class_id),
            self.first & 0xFFFFFFFF,
            _u16(self.frames),
            _unit(self.peak_score),
            _u16(self.box_w),
            _u16(self.box_h),
            _unit(self.box_share),
        )

    @classmethod
    def unpack(cls, data: bytes) -> Alert:
        _need(data, ALERT.size, "ALERT")
        event, class_id, first, frames, peak, w, h, share = ALERT.unpack_from(data)
        return cls(event, class_id, first, frames, peak / 65535, w, h, share / 65535)
