"""Every kind of bad image file becomes a clear one-line reason or is converted."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import BadInputError
from edge.frames import image_size, load_frames, read_image
from edge.types import Skipped
from tests.conftest import synthetic_frame, write_rgb


@pytest.fixture
def good_jpeg(tmp_path: Path) -> Path:
    return write_rgb(tmp_path / "good.jpg", synthetic_frame("mucosa", np.random.default_rng(0)))


def test_reads_rgb(good_jpeg: Path):
    image = read_image(good_jpeg)
    assert image.shape == (168, 200, 3) and image.dtype == np.uint8
    assert image[84, 150, 0] > image[84, 150, 2]  # reddish, so channels are RGB not BGR


def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadInputError, match=r"empty\.jpg: empty file"):
        read_image(path)


def test_corrupt_jpeg(tmp_path: Path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9")
    with pytest.raises(BadInputError, match=r"corrupt\.jpg: not a readable image"):
        read_image(path)


def test_truncated_jpeg(tmp_path: Path, good_jpeg: Path):
    data = good_jpeg.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"truncated\.jpg: truncated JPEG"):
        read_image(path)


def test_non_image_file_with_image_name(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(BadInputError, match="not a readable image"):
        read_image(path)


def test_grayscale_becomes_rgb(tmp_path: Path):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((40, 50), 77, dtype=np.uint8))
    image = read_image(path)
    assert image.shape == (40, 50, 3)
    assert (image == 77).all()


def test_rgba_png_becomes_rgb(tmp_path: Path):
    path = tmp_path / "rgba.png"
    bgra = np.zeros((40, 32, 4), dtype=np.uint8)
    bgra[..., 2] = 250  # red in BGRA order
    bgra[..., 3] = 128
    cv2.imwrite(str(path), bgra)
    image = read_image(path)
    assert image.shape == (40, 32, 3)
    assert image[0, 0].tolist() == [250, 0, 0]


def test_huge_image_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "huge.png"
    # 10000x10000 compresses to a few hundred kB when flat.
    cv2.imwrite(str(path), np.zeros((10000, 10000), dtype=np.uint8))
    with pytest.raises(BadInputError, match=r"huge\.png: image is 10000x10000, over the"):
        read_image(path)


def test_load_frames_counts_every_bad_input(tmp_path: Path, good_jpeg: Path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    items = list(load_frames([tmp_path, tmp_path / "missing", tmp_path / "sub"]))
    skipped = {Path(s.source).name: s.reason for s in items if isinstance(s, Skipped)}
    frames = [i for i in items if not isinstance(i, Skipped)]
    assert [Path(src).name for src, _ in frames] == ["good.jpg"]
    assert skipped["empty.jpg"] == "empty file (0 bytes)"
    assert skipped["readme.txt"] == "not an image file (by its name)"
    assert skipped["missing"] == "no such file or folder"
    assert skipped["sub"] == "folder holds no image files"


@pytest.mark.parametrize("name", ["f.jpg", "f.png", "f.bmp"])
def test_image_size_from_header_or_decode(tmp_path: Path, name: str):
    path = write_rgb(tmp_path / name, synthetic_frame("mucosa", np.random.default_rng(1), 70, 30))
    assert image_size(path) == (70, 30)
