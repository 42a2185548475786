"""Reading frames from disk. Bad files are expected: each becomes a ``Skipped`` with a
one-line reason, never an exception that stops a run and never a silent drop.

Before anything is decoded, a frame's size is known and checked: the file's size before
it is read (``MAX_FILE_BYTES``), then the width and height from its header (every format
decoded here has its header read by :mod:`edge.image_header`; OpenCV is never handed a
format whose size was not checked). Paths go to OpenCV only as bytes (``imdecode``,
``imencode``): a file name that is not UTF-8 crashes OpenCV's own path handling.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import BadInputError
from edge.image_header import ImageHeader, JpegLayout, jpeg_layout, read_header
from edge.preprocess import MIN_SIDE, Image
from edge.types import Skipped

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"})
# A frame larger than this is refused before decoding: endoscopy video is at most 4K
# (8 MP), and a 10000x10000 image would take 300 MB to decode on a small device.
MAX_PIXELS = 40_000_000
# A file larger than this is refused before it is read: no image within MAX_PIXELS needs
# more bytes in 8 bits a channel, even uncompressed RGBA (a BMP or TIFF), plus 1 MiB of
# headers. A 3 GB file named .jpg is one line, not a MemoryError on a 1 GB device.
MAX_FILE_BYTES = 4 * MAX_PIXELS + (1 << 20)

NOT_AN_IMAGE = "not JPEG, PNG, BMP, TIFF or WebP"

_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# libjpeg that meets the end of the data early fills every block it has not read with
# zero coefficients, which decode to exactly 128 in every channel: a JPEG cut short and
# given its end marker back ends in that grey (none of the 4,736 real JPEGs in
# ../shared/data does; tests/test_inputs.py measures it).
_JPEG_FILL = 128


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n} bytes"


def check_size(header: ImageHeader, source: str) -> None:
    """Refuse an image too large to decode or too small to classify."""
    w, h = header.width, header.height
    if w * h > MAX_PIXELS:
        raise BadInputError(
            f"{source}: image is {w}x{h}, over the {MAX_PIXELS // 1_000_000} MP limit"
        )
    if min(w, h) < MIN_SIDE:
        raise BadInputError(f"{source}: image is {w}x{h}, under the {MIN_SIDE} px minimum side")
    if header.tile is not None and header.tile[0] * header.tile[1] > MAX_PIXELS:
        tw, th = header.tile
        raise BadInputError(
            f"{source}: TIFF tiles of {tw}x{th}, over the {MAX_PIXELS // 1_000_000} MP limit"
        )


def _jpeg_truncated(data: bytes, layout: JpegLayout | None) -> str | None:
    """Why the JPEG's entropy-coded data is incomplete, from its markers (None: no sign).

    Three signs, none needing a decode: no end-of-image marker; scans missing (the
    coefficients of a progressive JPEG that no scan finishes); restart markers missing."""
    if _JPEG_EOI not in data[-64:]:
        return "truncated JPEG (no end-of-image marker)"
    if layout is None:
        return None
    uncoded = layout.uncoded()
    if uncoded:
        return f"truncated JPEG (scans missing: no scan completes {uncoded})"
    if not layout.restart_interval or len(layout.scans) != 1:
        return None
    # With restart markers, a single scan must hold one before every interval but the
    # first: fewer, and data is missing (0xFF 0xD0-0xD7 never occurs inside the data).
    found = sum(data.count(bytes((0xFF, 0xD0 + k)), layout.sos) for k in range(8))
    intervals = -(-layout.mcus // layout.restart_interval)
    if found < intervals - 1:
        return f"truncated JPEG ({found} of {intervals - 1} restart markers)"
    return None


def decode_image(data: bytes, source: str) -> Image:
    """Decode image bytes to RGB uint8; raise ``BadInputError`` naming ``source``."""
    if not data:
        raise BadInputError(f"{source}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise BadInputError(
            f"{source}: {_mb(len(data))}, over the {_mb(MAX_FILE_BYTES)} limit for a frame"
        )
    layout = jpeg_layout(data) if data[:2] == _JPEG_SOI else None
    header = ImageHeader("jpeg", layout.width, layout.height) if layout else read_header(data)
    if header is None:
        what = "a damaged JPEG header" if data[:2] == _JPEG_SOI else NOT_AN_IMAGE
        raise BadInputError(f"{source}: not a readable image ({what})")
    check_size(header, source)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if header.format == "jpeg":
        why = _jpeg_truncated(data, layout)
        if why:
            raise BadInputError(f"{source}: {why}")
        # libjpeg writes RGB itself: the same pixels as BGR then swapped, one pass less.
        rgb = _imdecode(buffer, cv2.IMREAD_COLOR_RGB, source)
        if rgb is None:
            raise BadInputError(f"{source}: not a readable image")
        if layout is not None and _grey_tail(rgb, layout.mcu):
            raise BadInputError(f"{source}: truncated JPEG (its last blocks are missing)")
        return _checked(np.asarray(rgb, dtype=np.uint8), header, source)
    decoded = _imdecode(buffer, cv2.IMREAD_UNCHANGED, source)
    if decoded is None:
        raise BadInputError(f"{source}: not a readable image")
    if decoded.dtype == np.uint16:  # 16-bit PNG or TIFF
        decoded = (decoded >> 8).astype(np.uint8)
    if decoded.dtype != np.uint8:
        raise BadInputError(f"{source}: unsupported pixel type {decoded.dtype}")
    if decoded.ndim == 3 and decoded.shape[2] == 1:
        decoded = decoded[:, :, 0]
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    conversion = _TO_RGB.get(channels)
    if conversion is None:
        raise BadInputError(f"{source}: unsupported image with {channels} channels")
    return _checked(np.asarray(cv2.cvtColor(decoded, conversion), np.uint8), header, source)


def _imdecode(buffer: npt.NDArray[np.uint8], flags: int, source: str) -> npt.NDArray[Any] | None:
    """``cv2.imdecode``, its own errors (a decoder out of memory) made ours."""
    try:
        decoded: npt.NDArray[Any] | None = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[-1].strip() if lines else "OpenCV error"
        raise BadInputError(f"{source}: not a readable image (OpenCV: {reason})") from None
    return decoded


def _grey_tail(rgb: npt.NDArray[Any], mcu: tuple[int, int]) -> bool:
    """Whether the frame's last MCU (bottom right) is libjpeg's fill for missing data.

    Its first row and column are left out where the MCU has more: chroma upsampling
    blends them with the MCU before, which was decoded."""
    height, width = rgb.shape[:2]
    top = (height - 1) // mcu[1] * mcu[1]
    left = (width - 1) // mcu[0] * mcu[0]
    top += 1 if height - top > 1 else 0
    left += 1 if width - left > 1 else 0
    return bool((rgb[top:, left:] == _JPEG_FILL).all())


def _checked(image: Image, header: ImageHeader, source: str) -> Image:
    """The decoded frame, if it is the size its header promised."""
    height, width = image.shape[:2]
    if (width, height) != (header.width, header.height):
        check_size(ImageHeader(header.format, width, height), source)
    return image


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refused before reading when it is over ``limit``."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise BadInputError(f"{path}: {_mb(size)}, over the {_mb(limit)} limit for a frame")
            data = f.read(limit + 1)  # a pipe or device has no size to check beforehand
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise BadInputError(f"{path}: over the {_mb(limit)} limit for a frame")
    return data


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header where possible."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    header = read_header(head)
    if header is None:  # a header beyond the first 64 kB (a TIFF's IFD at its end)
        header = read_header(read_bytes(path))
    if header is None:
        raise BadInputError(f"{path}: not a readable image ({NOT_AN_IMAGE})")
    return header.width, header.height


def read_image(path: Path) -> Image:
    """Read one image file as RGB uint8, or raise ``BadInputError`` naming the file."""
    return decode_image(read_bytes(path), str(path))


def opencv_path_ok(path: str | os.PathLike[str]) -> bool:
    """Whether OpenCV can be given this path: its name must be UTF-8. OpenCV crashes
    (a segfault) on a ``str`` holding the surrogates by which Python keeps the bytes
    of a name that is not."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def opencv_path(path: str | os.PathLike[str], what: str = "video") -> str:
    """The path as OpenCV takes it, or ``BadInputError`` in one line when its name is
    not UTF-8. Images never need it (they go through ``imdecode``/``imencode``); call it
    before ``cv2.VideoCapture`` and ``cv2.VideoWriter``."""
    if not opencv_path_ok(path):
        raise BadInputError(
            f"{os.fspath(path)}: OpenCV cannot open a {what} whose name is not UTF-8 (rename it)"
        )
    return os.fspath(path)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path | Skipped]:
    """Files as given and image files inside folders (sorted, recursive).

    A path that does not exist, an empty folder or a file that is not an image becomes a
    ``Skipped`` so the caller can count it.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = False
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if is_image_file(child):
                    found = True
                    yield child
                elif not child.name.startswith("."):
                    yield Skipped(str(child), "not an image file (by its name)")
            if not found:
                yield Skipped(str(path), "folder holds no image files")
        elif path.is_file():
            yield path
        else:
            yield Skipped(str(path), "no such file or folder")


def load_frames(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, Image] | Skipped]:
    """Decoded frames from files and folders; every unusable input becomes a ``Skipped``."""
    return decode_files(expand_paths(paths))


def decode_files(items: Iterable[Path | Skipped]) -> Iterator[tuple[str, Image] | Skipped]:
    """Decode files as ``expand_paths`` lists them; skips pass through, bad files join them."""
    for item in items:
        if isinstance(item, Skipped):
            yield item
            continue
        try:
            yield str(item), read_image(item)
        except BadInputError as exc:
            yield Skipped.from_error(item, exc)
