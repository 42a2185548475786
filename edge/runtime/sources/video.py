"""A UVC camera or a video file, decoded by OpenCV; each frame archived as JPEG.

A video file's frame is known by the file's name and its number in the file: replayed
into a study that holds it, the frames it has (same name and number, same bytes) are
not stored again. A camera's frames are always new."""

from __future__ import annotations

from pathlib import Path

from edge.errors import BadInputError
from edge.frames import opencv_path
from edge.runtime.sources.base import LOCAL_SESSION, SourceFrame
from edge.runtime.sources.local import LocalSource
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Codec, crc32

JPEG_QUALITY = 95  # the archive keeps what inference sees: this JPEG, decoded


class VideoSource(LocalSource):
    """A UVC device (an int or a device path) or a video file."""

    def __init__(self, target: str | int) -> None:
        import cv2

        super().__init__(f"video:{target}")
        opened = target if isinstance(target, int) else opencv_path(target)
        self._cap = cv2.VideoCapture(opened)
        if not self._cap.isOpened():
            raise BadInputError(f"{target}: not a video device or file OpenCV can open")
        self.is_file = isinstance(target, str) and Path(target).is_file()
        self.recording = self.is_file
        self.file_name = Path(target).name if isinstance(target, str) and self.is_file else None
        self.expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.is_file else 0
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        self._number = 0  # of the next frame in the file
        self._done = False

    def poll(self) -> list[SourceFrame]:
        import cv2

        while not self._done:
            ok, frame = self._cap.read()
            if not ok:
                self._done = self.is_file
                if self.is_file:
                    # Frames the container announced but that could not be decoded.
                    for _ in range(self._number, self.expected):
                        self._settle_new(Outcome.LOST, "undecodable")
                return []
            number = self._number
            self._number += 1
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                self._settle_new(Outcome.LOST, "could not be encoded for the archive")
                continue
            data = jpeg.tobytes()
            origin = f"{self.file_name}#{number}" if self.file_name is not None else None
            if origin is not None and self._held(origin, crc32(data)):
                continue
            index = self._settle_new(Outcome.DELIVERED)
            stamp = int(self._cap.get(cv2.CAP_PROP_POS_MSEC) * 1000)
            return [
                SourceFrame(LOCAL_SESSION, index, int(Codec.JPEG), stamp, data=data, origin=origin)
            ]
        return []

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        self._cap.release()
