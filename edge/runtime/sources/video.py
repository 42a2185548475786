"""A UVC camera or a video file, decoded by OpenCV."""

from __future__ import annotations

from pathlib import Path

from edge.errors import BadInputError
from edge.runtime.sources.base import LOCAL_SESSION, SourceFrame
from edge.runtime.sources.local import LocalSource
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Codec


class VideoSource(LocalSource):
    """A UVC device or a video file, decoded by OpenCV."""

    def __init__(self, target: str | int) -> None:
        import cv2

        super().__init__(f"video:{target}")
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise BadInputError(f"{target}: not a video device or file OpenCV can open")
        self.is_file = isinstance(target, str) and Path(target).is_file()
        self.recording = self.is_file
        self.expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.is_file else 0
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        self._index = 0
        self._done = False

    def poll(self) -> list[SourceFrame]:
        import cv2

        if self._done:
            return []
        ok, frame = self._cap.read()
        if not ok:
            self._done = self.is_file
            if self.is_file:
                # Frames the container announced but that could not be decoded.
                for index in range(self._index, self.expected):
                    self._session.settle(index, Outcome.LOST, "undecodable")
            return []
        index = self._index
        self._index += 1
        self._session.settle(index, Outcome.DELIVERED)
        stamp = int(self._cap.get(cv2.CAP_PROP_POS_MSEC) * 1000)
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return [SourceFrame(LOCAL_SESSION, index, int(Codec.RAW_RGB), stamp, image=image)]

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        self._cap.release()
