"""Frames for the simulated recorder to send: synthetic bytes, the image files of a
folder, mucosa-coloured JPEGs, the frames of a video. Each yields (bytes, codec, width,
height)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

from firmware_bridge.protocol import CODEC_BY_SUFFIX, Codec


def synthetic_frames(size: int, seed: int) -> Iterator[tuple[bytes, int, int, int]]:
    """Deterministic frame payloads: (bytes, codec, width, height); see ``frame_bytes``."""
    index = 0
    while True:
        yield frame_bytes(seed, index, size), int(Codec.RAW_RGB), 0, 0
        index += 1


def frame_bytes(seed: int, index: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + index).randbytes(size)


def folder_frames(folder: Path) -> Iterator[tuple[bytes, int, int, int]]:
    """Encoded image files of a folder, in name order, as the recorder would send them."""
    for path in sorted(folder.rglob("*")):
        codec = CODEC_BY_SUFFIX.get(path.suffix.lower())
        if codec is not None and path.is_file():
            yield path.read_bytes(), int(codec), 0, 0


def mixed_frames(folders: list[Path]) -> Iterator[tuple[bytes, int, int, int]]:
    """The image files of several folders taken in turn (one from each), over and over:
    a long stream from a few hundred files, every folder represented throughout."""
    lists = [
        [p for p in sorted(f.rglob("*")) if p.suffix.lower() in CODEC_BY_SUFFIX and p.is_file()]
        for f in folders
    ]
    lists = [files for files in lists if files]
    if not lists:
        raise ValueError(f"no image files in {', '.join(map(str, folders))}")
    for i in itertools.count():
        files = lists[i % len(lists)]
        path = files[(i // len(lists)) % len(files)]
        yield path.read_bytes(), int(CODEC_BY_SUFFIX[path.suffix.lower()]), 0, 0


def mucosa_frames(
    seed: int, size: tuple[int, int] = (320, 320)
) -> Iterator[tuple[bytes, int, int, int]]:
    """Synthetic JPEG frames with the colours of mucosa: decodable pictures for a demo
    where no real frames are at hand (``synthetic_frames`` are random bytes)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    while True:
        cx, cy = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h)
        shade = np.clip(1.2 - np.hypot(x - cx, y - cy) / (0.8 * w), 0.2, 1.0)
        noise = rng.normal(0, 12, (h, w, 1)).astype(np.float32)
        base = np.array([80, 90, 200], dtype=np.float32) * rng.uniform(0.7, 1.1, 3)  # BGR
        frame = np.clip(shade[..., None] * base + noise, 0, 255).astype(np.uint8)
        _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        yield jpeg.tobytes(), int(Codec.JPEG), w, h


def video_frames(path: Path, quality: int = 90) -> Iterator[tuple[bytes, int, int, int]]:
    """The frames of a video file, JPEG-encoded as a recorder would send them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a video OpenCV can read")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                h, w = frame.shape[:2]
                yield jpeg.tobytes(), int(Codec.JPEG), w, h
    finally:
        cap.release()
