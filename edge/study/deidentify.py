"""What ``study export --deidentify`` takes out: whatever could name the patient, the
recorder or the day, and nothing of the pixels.

- Frames: a JPEG's metadata segments (APP1-APP13 and APP15: EXIF, XMP, IPTC, maker
  notes; COM comments) and a PNG's text and time chunks (tEXt, zTXt, iTXt, eXIf, tIME) are
  dropped, every other byte kept: the image decodes to the same pixels. APP0 (JFIF) and
  APP14 (Adobe: how the colours are coded) stay. Raw frames carry no metadata.
- Sessions (one per recorder boot, a number the recorder chose) become 1, 2, ... in
  the order the study holds them.
- Times become microseconds since the study's first frame: durations stay, the date
  goes. A frame's origin (a file path, which may carry a name) is left out.
"""

from __future__ import annotations

import struct

from edge.image_header import after_entropy_data

_KEEP_APP = {0xE0, 0xEE}  # APP0 JFIF, APP14 Adobe
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG without its metadata segments; unchanged if it does not parse."""
    if not data.startswith(b"\xff\xd8"):
        return data
    out, i, size = [data[:2]], 2, len(data)
    while i + 2 <= size:
        if data[i] != 0xFF:
            return data  # not a marker where one must be: leave the frame as it is
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in _STANDALONE:
            out.append(data[i : i + 2])
            i += 2
            continue
        if marker == 0xD9:  # end of image: keep it and anything after it as it is
            out.append(data[i:])
            return b"".join(out)
        if i + 4 > size:
            return data
        (length,) = struct.unpack_from(">H", data, i + 2)
        end = i + 2 + length
        if length < 2 or end > size:
            return data
        drop = (0xE0 <= marker <= 0xEF and marker not in _KEEP_APP) or marker == 0xFE
        if not drop:
            out.append(data[i:end])
        if marker == 0xDA:  # a scan: its entropy-coded data follows, kept whole
            after = after_entropy_data(data, end)
            out.append(data[end:after])
            end = after
        i = end
    out.append(data[i:])
    return b"".join(out)


def strip_png(data: bytes) -> bytes:
    """The PNG without its text and time chunks; unchanged if it does not parse."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    out, i = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while i + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, i)
        end = i + 12 + length
        if end > len(data):
            return data
        kind = data[i + 4 : i + 8]
        if kind not in _PNG_DROP:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            break
    out.append(data[i:])
    return b"".join(out)


def strip(data: bytes, codec: int) -> bytes:
    """A frame's bytes without metadata, by its codec (1 JPEG, 2 PNG; others as they are)."""
    if codec == 1:
        return strip_jpeg(data)
    if codec == 2:
        return strip_png(data)
    return data
