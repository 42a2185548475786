"""Draw detections on frames and write annotated videos."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.errors import BadInputError
from edge.frames import VIDEO_SUFFIXES, opencv_path
from edge.preprocess import Image
from edge.types import Detections

BOX_COLOUR = (255, 56, 56)  # RGB
TEXT_COLOUR = (255, 255, 255)


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def draw(frame: Image, found: Detections) -> Image:
    """A copy of the RGB frame with each box and its label and score."""
    out = frame.copy()
    scale = max(frame.shape[:2]) / 640
    thickness = max(1, round(2 * scale))
    font_scale = max(0.35, 0.5 * scale)
    for det in found.items:
        x0, y0, x1, y1 = (round(v) for v in (det.box.x0, det.box.y0, det.box.x1, det.box.y1))
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, thickness, cv2.LINE_AA)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y0 - th - base - 2 if y0 - th - base - 2 >= 0 else y0
        cv2.rectangle(out, (x0, top), (x0 + tw + 2, top + th + base + 2), BOX_COLOUR, -1)
        cv2.putText(
            out,
            text,
            (x0 + 1, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            TEXT_COLOUR,
            1,
            cv2.LINE_AA,
        )
    return out


def write_image(path: Path, frame: Image) -> None:
    """Write an RGB frame, encoded by OpenCV but written by Python: any file name works
    (OpenCV's own ``imwrite`` crashes on one that is not UTF-8)."""
    ok, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise BadInputError(f"{path}: could not encode the annotated image")
    try:
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise BadInputError(
            f"{path}: could not write the annotated image ({exc.strerror or exc})"
        ) from None


@dataclass
class VideoInfo:
    fps: float
    frames: int  # as the container says; 0 when it does not know
    width: int
    height: int


class VideoReader:
    """RGB frames of a video file, with what its container says about it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise BadInputError(f"{path}: no such video file")
        self._cap = cv2.VideoCapture(opencv_path(path, "video"))
        if not self._cap.isOpened():
            raise BadInputError(f"{path}: not a video OpenCV can read")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.info = VideoInfo(
            fps if 0 < fps < 1000 else 25.0,
            max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))),
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )

    def __iter__(self) -> Iterator[Image]:
        while True:
            ok, frame = self._cap.read()
            if not ok:
                return
            yield np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8)

    def close(self) -> None:
        self._cap.release()


class VideoWriter:
    """An MP4 (mp4v) file of RGB frames; the size is fixed by the first frame."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: Image) -> None:
        if self._writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            target = opencv_path(self.path, "video to write")
            self._writer = cv2.VideoWriter(target, fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise BadInputError(f"{self.path}: cannot write a video here")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class Progress:
    """A one-line progress bar on a terminal; on a pipe, a line every 10 %."""

    def __init__(self, name: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._last_decile = -1

    def update(self, done: int) -> None:
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        if self.total:
            share = min(done / self.total, 1.0)
            bar = "#" * round(share * 30)
            text = f"{self.name} [{bar:<30}] {done}/{self.total} {rate:.1f} frames/s"
            decile = int(share * 10)
        else:
            text, decile = f"{self.name} {done} frames {rate:.1f} frames/s", done // 100
        if self.tty:
            self.stream.write("\r" + text)
            self.stream.flush()
        elif decile != self._last_decile:
            self._last_decile = decile
            print(text, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
