"""Width and height of an image from its header, without decoding a pixel.

One reader for each format the runtime decodes: JPEG, PNG, BMP, TIFF (and BigTIFF) and
WebP. OpenCV decodes by content, not by name, and reads more formats than these; a file
whose header is none of them is never handed to it, so the size limits hold for every
file that is decoded. Every reader is bounds-checked: a damaged header is ``None``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_PNG = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length


@dataclass(frozen=True)
class ImageHeader:
    format: str  # jpeg, png, bmp, tiff, webp
    width: int
    height: int
    tile: tuple[int, int] | None = None  # a tiled TIFF's tile: the decoder allocates one


@dataclass(frozen=True)
class Scan:
    components: tuple[int, ...]  # component ids
    start: int  # spectral selection Ss..Se (0..63 for a sequential scan)
    end: int
    low_bit: int  # successive approximation Al: 0 is a coefficient's last bit


@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's markers say about its entropy-coded data."""

    width: int
    height: int
    progressive: bool
    components: tuple[int, ...]  # component ids of the frame
    mcu: tuple[int, int]  # pixels (width, height) of a minimum coded unit
    mcus: int  # minimum coded units of the first scan
    restart_interval: int  # MCUs between restart markers; 0: none
    scans: tuple[Scan, ...]
    sos: int  # offset of the first scan's data

    def uncoded(self) -> str | None:
        """A coefficient of a component that no scan gives its last bit, or None: the
        scans a truncated progressive (or multi-scan) JPEG lost."""
        for component in self.components:
            done = [False] * 64
            for scan in self.scans:
                if component in scan.components and scan.low_bit == 0:
                    for k in range(scan.start, min(scan.end, 63) + 1):
                        done[k] = True
            if not all(done):
                return f"component {component}, coefficient {done.index(False)}"
        return None


def read_header(data: bytes) -> ImageHeader | None:
    """The format and size of an image, or None for anything else or a damaged header."""
    try:
        if data[:2] == b"\xff\xd8":
            layout = jpeg_layout(data)
            return ImageHeader("jpeg", layout.width, layout.height) if layout else None
        if data[:8] == _PNG:
            return _png(data)
        if data[:2] == b"BM":
            return _bmp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _sized(fmt: str, width: int, height: int) -> ImageHeader | None:
    return ImageHeader(fmt, width, height) if width > 0 and height > 0 else None


def _png(data: bytes) -> ImageHeader | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return _sized("png", width, height)


def _bmp(data: bytes) -> ImageHeader | None:
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return _sized("bmp", width, abs(height))  # a negative height is top-down


def _tiff(data: bytes) -> ImageHeader | None:
    """The first image's ImageWidth (256) and ImageLength (257): the page OpenCV reads."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack_from(order + "Q", data, 8)
        (count,) = struct.unpack_from(order + "Q", data, offset)
        entry, first = 20, offset + 8
    else:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        entry, first = 12, offset + 2
    if count > 4096 or first + count * entry > len(data):
        return None
    found: dict[int, int] = {}
    for i in range(count):
        at = first + i * entry
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag not in (256, 257, 322, 323):  # width, length, tile width, tile length
            continue
        value_at = at + (12 if big else 8)
        codes = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
        if kind not in codes:
            return None
        (found[tag],) = struct.unpack_from(order + codes[kind], data, value_at)
    if 256 not in found or 257 not in found:
        return None
    header = _sized("tiff", found[256], found[257])
    if header is not None and (322 in found or 323 in found):
        tile = (found.get(322, header.width), found.get(323, header.height))
        header = ImageHeader("tiff", header.width, header.height, tile)
    return header


def _webp(data: bytes) -> ImageHeader | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return _sized("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: a signature byte, then width-1 and height-1, 14 bits
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        return _sized("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: the canvas, width-1 and height-1 in 24 bits
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _sized("webp", width, height)
    return None


def jpeg_layout(data: bytes) -> JpegLayout | None:
    """Walk a JPEG's markers and scans; None if there is no frame header or scan."""
    i, size = 2, len(data)
    frame: tuple[int, int, bool, list[tuple[int, int, int]]] | None = None
    restart = 0
    scans: list[Scan] = []
    first_data = 0
    while i + 4 <= size:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker == 0xD9:  # end of image
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2 or i + 2 + length > size:
            return None
        if marker in _SOF:
            height, width, n = struct.unpack_from(">HHB", data, i + 5)
            parts = [data[i + 10 + 3 * c : i + 13 + 3 * c] for c in range(n)]
            factors = [(p[0], p[1] >> 4, p[1] & 15) for p in parts if len(p) == 3]
            if not factors or len(factors) != n or any(h == 0 or v == 0 for _, h, v in factors):
                return None
            frame = (width, height, marker in _PROGRESSIVE, factors)
        elif marker == 0xDD:  # DRI
            (restart,) = struct.unpack_from(">H", data, i + 4)
        elif marker == 0xDA:  # SOS: the entropy-coded data follows the segment
            if frame is None:
                return None
            n = data[i + 4]
            ids = tuple(data[i + 5 + 2 * c] for c in range(n))
            ss, se, approx = data[i + 5 + 2 * n : i + 8 + 2 * n]
            sequential = not frame[2]
            scans.append(Scan(ids, 0 if sequential else ss, 63 if sequential else se, approx & 15))
            i += 2 + length
            first_data = first_data or i
            i = after_entropy_data(data, i)
            continue
        i += 2 + length
    if frame is None or not scans:
        return None
    width, height, progressive, factors = frame
    hmax = max(h for _, h, _ in factors)
    vmax = max(v for _, _, v in factors)
    # An interleaved scan's MCU spans hmax x vmax blocks; a single component's is one
    # block of it (the first component, as for a greyscale frame).
    _, h, v = factors[0]
    mcu = (8 * hmax, 8 * vmax) if len(scans[0].components) > 1 else (8 * hmax // h, 8 * vmax // v)
    mcus = -(-width // mcu[0]) * -(-height // mcu[1])
    return JpegLayout(
        width,
        height,
        progressive,
        tuple(c for c, _, _ in factors),
        mcu,
        mcus,
        restart,
        tuple(scans),
        first_data,
    )


# In entropy-coded data an 0xFF is followed by 0x00 (a stuffed byte), a restart marker or
# another 0xFF (fill): anything else is the marker that ends the data.
_MARKER_AFTER_DATA = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")


def after_entropy_data(data: bytes, i: int) -> int:
    """The offset of the first marker after entropy-coded data starting at ``i``."""
    found = _MARKER_AFTER_DATA.search(data, i)
    return found.start() if found else len(data)
