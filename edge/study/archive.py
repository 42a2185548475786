"""The archive: append-only segments of self-describing frame records.

    STUDY/archive/000001.bin, 000002.bin, ...

Each record is a 40-byte header, the frame's origin (a folder frame's relative path, or
nothing) and the frame's bytes exactly as received:

    magic "CEF2" | session u32 | index u32 | timestamp_us u64 | length u32 | codec u16
    | width u16 | height u16 | origin_len u16 | crc32c(data) u32 | crc32c(header, origin) u32

A record describes itself, so the database's index can be rebuilt from the archive
alone (``scan``), and a damaged header is told from a damaged frame. Segments written
before the header carried its codec and CRCs (schema 0: magic "CEF1", 24 bytes) are still
read through the database's index; ``scan`` reports them as legacy.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import crc32c

from edge.study import sealing

MAGIC = b"CEF2"
LEGACY_MAGIC = b"CEF1"
HEADER = struct.Struct("<4sIIQIHHHHII")
_CHECKED = HEADER.size - 4  # the header's own CRC covers everything before it
LEGACY_HEADER = struct.Struct("<4sIIQI")
SEGMENT_BYTES = 256 << 20  # a new segment after this many bytes
MAX_FRAME = 64 << 20  # no frame record claims more (a damaged length field)


def crc(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32C, the link's frame checksum (the recorder's META carries it)."""
    return int(crc32c.crc32c(data, value))


@dataclass(frozen=True)
class Record:
    """What a record header says about its frame."""

    session: int
    index: int
    timestamp_us: int
    length: int
    codec: int
    width: int
    height: int
    crc: int
    origin: str | None = None

    def header(self) -> bytes:
        origin = _encoded(self.origin)
        head = HEADER.pack(
            MAGIC,
            self.session,
            self.index,
            self.timestamp_us,
            self.length,
            self.codec,
            self.width,
            self.height,
            len(origin),
            self.crc,
            0,
        )[:_CHECKED]
        return head + crc(origin, crc(head)).to_bytes(4, "little") + origin


@dataclass(frozen=True)
class Scanned:
    """One record found by ``scan``: where its data starts, and whether it is whole."""

    segment: int
    offset: int  # of the frame's bytes
    record: Record
    data_ok: bool


@dataclass(frozen=True)
class Damage:
    """Bytes of a segment that hold no readable record."""

    segment: int
    offset: int
    length: int
    what: str


def segment_path(folder: Path, segment: int) -> Path:
    return folder / f"{segment:06d}.bin"


def segments(folder: Path) -> list[tuple[int, Path]]:
    """The segment files of an archive folder, in order (other files are not ours)."""
    out = []
    for path in folder.glob("*.bin"):
        if path.stem.isdigit():
            out.append((int(path.stem), path))
    return sorted(out)


def archive_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for _, p in segments(folder)) if folder.is_dir() else 0


PRIVATE_FILE = 0o600  # a study's files: patient data, for the study's user alone


def _open_segment(path: Path) -> BinaryIO:
    """A segment for appending, created owner-only (an existing one keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


class Appender:
    """Appends records to the last segment; the caller ``sync``s before committing."""

    def __init__(self, folder: Path, segment: int) -> None:
        self.folder = folder
        self.segment = segment
        self.file = _open_segment(segment_path(folder, segment))

    def append(self, record: Record, data: bytes) -> tuple[int, int]:
        """Write one record; returns (segment, offset of its data)."""
        if self.file.tell() >= SEGMENT_BYTES:
            self.sync()
            self.file.close()
            self.segment += 1
            self.file = _open_segment(segment_path(self.folder, self.segment))
        head = record.header()
        offset = self.file.tell() + len(head)
        self.file.write(head)
        self.file.write(data)
        return self.segment, offset

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def same_file(self) -> bool:
        """Whether the segment being written is still the file at its path (a study
        folder removed or replaced under a running study is not)."""
        try:
            here = os.stat(segment_path(self.folder, self.segment))
        except OSError:
            return False
        mine = os.fstat(self.file.fileno())
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        self.file.close()


_UNRESOLVED = object()


class Reader:
    """Reads frame bytes by (segment, offset, length), keeping the segments read last
    open: at most ``OPEN_SEGMENTS`` (a 12-hour study at 35 frames/s has a hundred
    segments; one file kept open for each leaked a descriptor every 9 minutes of a soak).
    The bytes a sealed study stores are opened by ``opened`` with the process's key
    (looked up on first need: ``study verify`` reads sealed bytes without one)."""

    OPEN_SEGMENTS = 2  # the one being written, the one before it (a backlog across the two)

    def __init__(self, folder: Path, sealer: object = _UNRESOLVED) -> None:
        self.folder = folder
        self._fds: OrderedDict[int, int] = OrderedDict()  # least recently read first
        self._lock = threading.Lock()  # a descriptor is never closed under another read
        self._sealer = sealer

    def use_sealer(self, sealer: sealing.Sealer | None) -> None:
        self._sealer = sealer

    def check_key(self) -> None:
        """A one-line StudyKeyError now if the study is sealed and the key is missing or
        another study's (before a reader writes anything of its own)."""
        if self._sealer is _UNRESOLVED:
            self._sealer = sealing.sealer_for(self.folder.parent)

    def opened(self, stored: bytes, session: int, index: int) -> bytes:
        """A frame's bytes as received, from its stored bytes."""
        self.check_key()
        if self._sealer is None:
            return stored
        assert isinstance(self._sealer, sealing.Sealer)
        return self._sealer.open(stored, session, index)

    def read(self, segment: int, offset: int, length: int) -> bytes:
        with self._lock:
            fd = self._fds.get(segment)
            if fd is None:
                fd = os.open(segment_path(self.folder, segment), os.O_RDONLY)
                self._fds[segment] = fd
                if len(self._fds) > self.OPEN_SEGMENTS:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(segment)
            data = os.pread(fd, length, offset)
        if len(data) != length:
            raise OSError(f"segment {segment:06d} ends before byte {offset + length}")
        return data

    def header_at(self, segment: int, offset: int, origin: str | None) -> Record | None:
        """The header of the record whose frame data starts at ``offset``, if sound."""
        olen = len(_encoded(origin))
        start = offset - olen - HEADER.size
        if start < 0:
            return None
        raw = self.read(segment, start, HEADER.size + olen)
        return _parse(raw[: HEADER.size], raw[HEADER.size :])

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _encoded(origin: str | None) -> bytes:
    return origin.encode("utf-8", "surrogateescape") if origin else b""


def _parse(head: bytes, origin: bytes) -> Record | None:
    if len(head) < HEADER.size or head[:4] != MAGIC:
        return None
    _, session, index, stamp, length, codec, width, height, olen, dcrc, hcrc = HEADER.unpack(head)
    if olen != len(origin) or crc(origin, crc(head[:_CHECKED])) != hcrc:
        return None
    name = origin.decode("utf-8", "surrogateescape") if origin else None
    return Record(session, index, stamp, length, codec, width, height, dcrc, name)


def scan(folder: Path, segment: int, start: int = 0) -> Iterator[Scanned | Damage]:
    """Every record of a segment from byte ``start`` on, and every stretch of bytes that
    is none (a torn tail, a damaged header: the scan looks for the next sound header)."""
    path = segment_path(folder, segment)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            yield from _scan(blob, segment, start)


def _scan(blob: mmap.mmap, segment: int, pos: int) -> Iterator[Scanned | Damage]:
    size = len(blob)
    while pos < size:
        record = None
        if blob[pos : pos + 4] == LEGACY_MAGIC:
            yield Damage(segment, pos, size - pos, "records of schema 0 (no CRC in the header)")
            return
        if blob[pos : pos + 4] == MAGIC and pos + HEADER.size <= size:
            olen = struct.unpack_from("<H", blob, pos + 30)[0]
            head = blob[pos : pos + HEADER.size]
            record = _parse(head, blob[pos + HEADER.size : pos + HEADER.size + olen])
        if record is None or record.length > MAX_FRAME:
            following = blob.find(MAGIC, pos + 1)
            end = size if following < 0 else following
            yield Damage(segment, pos, end - pos, "no sound record header")
            pos = end
            continue
        start = pos + HEADER.size + len(_encoded(record.origin))
        end = start + record.length
        if end > size:
            yield Damage(segment, pos, size - pos, "a record cut short (a torn write)")
            return
        yield Scanned(segment, start, record, crc(blob[start:end]) == record.crc)
        pos = end
