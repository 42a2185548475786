"""Inputs that crashed, exhausted memory or were classified though they should not be:
a size check before reading and before decoding, for every format; frames under 32 px
refused; JPEGs cut short and given their end marker back found; names OpenCV cannot take."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import BadInputError
from edge.frames import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    decode_image,
    image_size,
    opencv_path,
    opencv_path_ok,
    read_image,
)
from edge.image_header import jpeg_layout, read_header
from edge.preprocess import MIN_SIDE, prepare
from tests.conftest import REPO, SHARED_DATA, synthetic_frame


def _encoded(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    assert ok
    return buffer.tobytes()


def _frame(width: int = 200, height: int = 168, seed: int = 0) -> np.ndarray:
    return cv2.cvtColor(
        synthetic_frame("mucosa", np.random.default_rng(seed), width, height), cv2.COLOR_RGB2BGR
    )


# --- sizes from headers, every format ----------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "params", "fmt"),
    [
        (".jpg", [], "jpeg"),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "jpeg"),
        (".png", [], "png"),
        (".bmp", [], "bmp"),
        (".tiff", [], "tiff"),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], "webp"),  # lossy, VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "webp"),  # lossless, VP8L
    ],
)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_format_is_sized_from_its_header(ext: str, params: list[int], fmt: str, channels):
    image = _frame(70, 50)
    if channels == 1:
        image = image[:, :, 0]
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    if ext == ".jpg" and channels == 4:
        pytest.skip("JPEG has no alpha")
    data = _encoded(ext, image, params)
    header = read_header(data)
    assert header is not None and (header.format, header.width, header.height) == (fmt, 70, 50)
    assert decode_image(data, "f").shape == (50, 70, 3)


def test_a_bmp_stored_top_down_and_an_os2_bmp():
    data = bytearray(_encoded(".bmp", _frame(70, 50)))
    data[22:26] = struct.pack("<i", -50)  # negative height: rows from the top
    header = read_header(bytes(data))
    assert header is not None and (header.width, header.height) == (70, 50)
    core = b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 640, 480, 1, 24)
    header = read_header(core)
    assert header is not None and (header.width, header.height) == (640, 480)


def _tiff(width: int, height: int, *, big: bool = False, order: str = "<") -> bytes:
    """A bare TIFF header whose first IFD (placed after 1 kB) gives width and height."""
    if big:
        mark = b"II" if order == "<" else b"MM"
        head = mark + struct.pack(order + "HHHQ", 43, 8, 0, 1024)
        ifd = struct.pack(order + "Q", 2)
        ifd += struct.pack(order + "HHQQ", 256, 16, 1, width)
        ifd += struct.pack(order + "HHQQ", 257, 16, 1, height)
    else:
        mark = b"II" if order == "<" else b"MM"
        head = mark + struct.pack(order + "HI", 42, 1024)
        ifd = struct.pack(order + "H", 2)
        ifd += struct.pack(order + "HHII", 256, 4, 1, width)
        ifd += struct.pack(order + "HHIHH", 257, 3, 1, height, 0)
    return head + bytes(1024 - len(head)) + ifd + bytes(8)


@pytest.mark.parametrize(("big", "order"), [(False, "<"), (False, ">"), (True, "<"), (True, ">")])
def test_tiff_and_bigtiff_headers_in_either_byte_order(big: bool, order: str):
    header = read_header(_tiff(12000, 9000, big=big, order=order))
    assert header is not None and (header.format, header.width, header.height) == (
        "tiff",
        12000,
        9000,
    )
    with pytest.raises(BadInputError, match="image is 12000x9000, over the 40 MP limit"):
        decode_image(_tiff(12000, 9000, big=big, order=order), "f.tif")


def test_a_100_megapixel_tiff_is_refused_before_decoding(tmp_path: Path):
    """The 40 MP limit applied to PNG and JPEG headers only: a 100 MP TIFF was decoded."""
    path = tmp_path / "big.tif"
    assert cv2.imwrite(str(path), np.zeros((10000, 10000), np.uint8))
    assert path.stat().st_size < 5_000_000  # flat: small on disk, 100 MB decoded
    with pytest.raises(BadInputError, match=r"big\.tif: image is 10000x10000, over the 40 MP"):
        read_image(path)
    # Named .png, it is decoded by content all the same: the check goes by content too.
    renamed = path.rename(tmp_path / "big.png")
    with pytest.raises(BadInputError, match="image is 10000x10000"):
        read_image(renamed)
    assert image_size(renamed) == (10000, 10000)


@pytest.mark.parametrize(
    "data",
    [
        _encoded(".ppm", np.zeros((40, 40, 3), np.uint8)),  # OpenCV reads it; we do not
        b"GIF89a" + bytes(32),
        b"\x89PNG\r\n\x1a\n" + bytes(8) + b"XXXX" + bytes(16),  # no IHDR first
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(20),  # no key frame start code
        b"BM" + bytes(40),  # zero width
        b"II*\x00" + struct.pack("<I", 1 << 30),  # IFD beyond the end
    ],
)
def test_a_format_not_sized_is_never_decoded(data: bytes):
    with pytest.raises(BadInputError, match="not a readable image"):
        decode_image(data, "f.png")


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path: Path):
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GB that take no disk
    with pytest.raises(BadInputError, match=r"huge\.jpg: 3221 MB, over the 161 MB limit"):
        read_image(path)
    assert MAX_FILE_BYTES >= 4 * MAX_PIXELS  # an uncompressed RGBA frame at the limit fits


def test_a_3_gb_file_under_a_pi_sized_memory_cap(tmp_path: Path):
    """It was read whole before any check: MemoryError under a 1 GiB address space."""
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:
        f.truncate(3 << 30)
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import sys
from edge.cli import main
sys.exit(main(["classify", {str(path)!r}, "--threads", "1"]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout == f"{path}\tskipped\t3221 MB, over the 161 MB limit for a frame\n"
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr


# --- the smallest frame -----------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (31, 200), (200, 31)])
def test_frames_under_32_px_a_side_are_refused(width: int, height: int):
    data = _encoded(".png", np.full((height, width, 3), 90, np.uint8))
    with pytest.raises(BadInputError, match=f"image is {width}x{height}, under the 32 px"):
        decode_image(data, "f.png")
    with pytest.raises(BadInputError, match=f"frame is {width}x{height}, under the 32 px"):
        prepare(np.full((height, width, 3), 90, np.uint8), 128)  # frames given in code


def test_a_frame_of_32_px_is_taken():
    assert decode_image(_encoded(".png", np.zeros((32, 32, 3), np.uint8)), "f").shape == (
        MIN_SIDE,
        MIN_SIDE,
        3,
    )


# --- JPEGs cut short ------------------------------------------------------------------------


def _cut(data: bytes, fraction: float) -> bytes:
    """The JPEG cut at ``fraction`` of its entropy-coded data, its end marker put back."""
    layout = jpeg_layout(data)
    assert layout is not None
    return data[: layout.sos + int((len(data) - 2 - layout.sos) * fraction)] + b"\xff\xd9"


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9, 0.99])
def test_a_truncated_jpeg_with_its_end_marker_put_back_is_refused(fraction: float):
    data = _encoded(".jpg", _frame(622, 437))  # sides that are not multiples of 16
    with pytest.raises(BadInputError, match="truncated JPEG"):
        decode_image(_cut(data, fraction), "f.jpg")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_a_truncated_jpeg_with_restart_markers_is_refused_by_its_markers(fraction: float):
    data = _encoded(".jpg", _frame(), [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    with pytest.raises(BadInputError, match="restart markers"):
        decode_image(_cut(data, fraction), "f.jpg")


def test_a_progressive_jpeg_missing_scans_is_refused():
    data = _encoded(".jpg", _frame(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    layout = jpeg_layout(data)
    assert layout is not None and layout.progressive and len(layout.scans) > 1
    last_scan = data.rfind(b"\xff\xda")
    with pytest.raises(BadInputError, match="scans missing"):
        decode_image(data[:last_scan] + b"\xff\xd9", "f.jpg")
    with pytest.raises(BadInputError, match="truncated JPEG"):
        decode_image(_cut(data, 0.05), "f.jpg")  # in its first scan


def test_complete_jpegs_of_every_kind_are_taken():
    for params in ([], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        for image in (_frame(622, 437), _frame(64, 33)[:, :, 0]):
            data = _encoded(".jpg", image, params)
            assert decode_image(data, "f.jpg").shape[:2] == image.shape[:2]


def test_a_jpeg_ending_in_exact_mid_grey_is_taken_for_a_truncated_one():
    """The price of finding truncation after a decode: a frame whose last block is
    exactly (128, 128, 128) is what libjpeg makes of missing data (no real one is)."""
    grey = np.full((48, 64, 3), 128, np.uint8)
    with pytest.raises(BadInputError, match="truncated JPEG"):
        decode_image(_encoded(".jpg", grey), "grey.jpg")
    grey[-1, -1] = 0  # anything else in that block
    assert decode_image(_encoded(".jpg", grey), "f.jpg").shape == (48, 64, 3)


@pytest.mark.slow
@pytest.mark.data
def test_no_real_jpeg_is_taken_for_a_truncated_one():
    """False positives of the truncation checks on every real JPEG: none."""
    files = sorted(p for p in SHARED_DATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        pytest.skip(f"real data not present at {SHARED_DATA}")
    refused = []
    for path in files:
        try:
            read_image(path)
        except BadInputError as exc:
            refused.append(str(exc))
    assert len(files) > 4000 and refused == []


# --- names OpenCV cannot take ------------------------------------------------------------------


def test_opencv_path_refuses_a_name_that_is_not_utf8(tmp_path: Path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    assert opencv_path_ok(tmp_path / "café.mp4") and not opencv_path_ok(odd)
    assert opencv_path(tmp_path / "café.mp4") == str(tmp_path / "café.mp4")
    with pytest.raises(BadInputError, match=r"OpenCV cannot open a video whose name is not UTF-8"):
        opencv_path(odd)


def test_an_image_with_a_name_that_is_not_utf8_is_read(tmp_path: Path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")
    odd.write_bytes(_encoded(".jpg", _frame()))
    assert read_image(odd).shape == (168, 200, 3) and image_size(odd) == (200, 168)


def test_a_tiff_with_giant_tiles_is_refused_before_decoding():
    """A small image in tiles of 65536x65536: the decoder allocates a tile at a time."""
    head = b"II" + struct.pack("<HI", 42, 8)
    entries = [(256, 4, 64), (257, 4, 64), (322, 4, 65536), (323, 4, 65536)]
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
    with pytest.raises(BadInputError, match="TIFF tiles of 65536x65536, over the 40 MP limit"):
        decode_image(head + ifd + bytes(8), "f.tif")


def test_an_opencv_error_while_decoding_is_a_bad_input(monkeypatch: pytest.MonkeyPatch):
    """A decoder out of memory raises cv2.error: one line naming the frame, not a crash."""

    def failing(buffer: np.ndarray, flags: int) -> np.ndarray:
        raise cv2.error("OpenCV(5.0.0) grfmt_tiff.cpp:1: error: (-4:Insufficient memory)")

    monkeypatch.setattr(cv2, "imdecode", failing)
    with pytest.raises(BadInputError, match=r"f\.png: not a readable image \(OpenCV: .*memory"):
        decode_image(_encoded(".png", np.zeros((40, 40, 3), np.uint8)), "f.png")
