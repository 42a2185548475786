"""Reading frames from disk. Bad files are expected: each becomes a ``Skipped`` with a
one-line reason, never an exception that stops a run and never a silent drop."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import BadInputError
from edge.preprocess import Image
from edge.types import Skipped

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"})
# A frame larger than this is refused before decoding: endoscopy video is at most 4K
# (8 MP), and a 10000x10000 image would take 300 MB to decode on a small device.
MAX_PIXELS = 40_000_000

_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG or JPEG header, without decoding (None if unknown)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == _JPEG_SOI:
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            seg = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD):
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
            i += 2 + seg
    return None


def decode_image(data: bytes, source: str) -> Image:
    """Decode image bytes to RGB uint8; raise ``BadInputError`` naming ``source``."""
    if not data:
        raise BadInputError(f"{source}: empty file (0 bytes)")
    size = _image_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise BadInputError(
            f"{source}: image is {size[0]}x{size[1]}, over the {MAX_PIXELS // 1_000_000} MP limit"
        )
    # libjpeg decodes a truncated file into a grey-filled frame with only a warning:
    # a file without its end-of-image marker is refused instead.
    buffer = np.frombuffer(data, dtype=np.uint8)
    if data[:2] == _JPEG_SOI:
        if _JPEG_EOI not in data[-64:]:
            raise BadInputError(f"{source}: truncated JPEG (no end-of-image marker)")
        # libjpeg writes RGB itself: the same pixels as BGR then swapped, one pass less.
        rgb: npt.NDArray[Any] | None = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
        if rgb is None:
            raise BadInputError(f"{source}: not a readable image")
        return np.asarray(rgb, dtype=np.uint8)
    decoded: npt.NDArray[Any] | None = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
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
    return np.asarray(cv2.cvtColor(decoded, conversion), dtype=np.uint8)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header where possible."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    size = _image_size(head)
    if size is not None:
        return size
    height, width = read_image(path).shape[:2]
    return width, height


def read_image(path: Path) -> Image:
    """Read one image file as RGB uint8, or raise ``BadInputError`` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


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
