"""Frames for the simulated recorder that need OpenCV (firmware_bridge does not):
synthetic mucosa and a video's frames, JPEG-encoded as a recorder sends them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from firmware_bridge.protocol import Codec


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
