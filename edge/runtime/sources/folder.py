"""A folder of image files replayed as a recording, each frame known by path and content."""

from __future__ import annotations

import logging
from pathlib import Path

from edge.errors import BadInputError
from edge.frames import read_bytes
from edge.runtime.sources.base import LOCAL_SESSION, SourceFrame
from edge.runtime.sources.local import LocalSource
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import CODEC_BY_SUFFIX, crc32

log = logging.getLogger(__name__)


class DirSource(LocalSource):
    """Image files of a folder, in name order (a recorded study replayed).

    A frame is its file: relative path and content. Replayed into a study that holds
    the folder already, files it has (same path, same bytes) are not sent again, and
    new or changed files become new frames after the ones it has."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise BadInputError(f"{folder}: no such folder")
        super().__init__(f"dir:{folder}")
        self.folder = folder
        self.recording = True
        self.files = sorted(
            p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        self._position = 0

    def poll(self) -> list[SourceFrame]:
        while self._position < len(self.files):
            path = self.files[self._position]
            self._position += 1
            frame = self._read(path)
            if frame is not None:
                return [frame]
        return []

    def _read(self, path: Path) -> SourceFrame | None:
        origin = path.relative_to(self.folder).as_posix()
        codec = CODEC_BY_SUFFIX.get(path.suffix.lower())
        if codec is None:
            self._settle_new(Outcome.LOST, "not an image file")
            return None
        try:  # a file too big for a frame is refused before it is read
            data = read_bytes(path)
            stamp = int(path.stat().st_mtime * 1e6)
        except (BadInputError, OSError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            self._settle_new(Outcome.LOST, reason)
            log.warning("%s", exc)
            return None
        if self._held(origin, crc32(data)):
            return None
        index = self._settle_new(Outcome.DELIVERED)
        return SourceFrame(LOCAL_SESSION, index, int(codec), stamp, data=data, origin=origin)

    @property
    def finished(self) -> bool:
        return self._position >= len(self.files)

    def close(self) -> None:
        pass
