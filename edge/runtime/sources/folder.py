"""A folder of image files replayed as a recording, each frame known by path and content."""

from __future__ import annotations

from pathlib import Path

from edge.errors import BadInputError
from edge.runtime.sources.base import LOCAL_SESSION, Known, SourceFrame
from edge.runtime.sources.local import LocalSource
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import CODEC_BY_SUFFIX, crc32


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
        self._next = 0  # the index the next new frame gets
        self._known: Known = {}
        self.unchanged = 0  # files the study already held

    def attach(self, known: Known) -> None:
        self._known = known
        self._next = max((index for index, _ in known.values()), default=-1) + 1
        # Indices below are earlier runs' account: this run's ledger starts after them.
        del self.ledger.sessions[LOCAL_SESSION]
        self._session = self.ledger.session(LOCAL_SESSION, start=self._next)

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
        try:
            data = path.read_bytes()
            stamp = int(path.stat().st_mtime * 1e6)
        except OSError as exc:
            self._settle_new(Outcome.LOST, f"unreadable: {exc.strerror}")
            return None
        crc = crc32(data)
        if self._known.get(origin, (0, None))[1] == crc:
            self.unchanged += 1
            return None
        index = self._settle_new(Outcome.DELIVERED)
        return SourceFrame(LOCAL_SESSION, index, int(codec), stamp, data=data, origin=origin)

    def _settle_new(self, outcome: Outcome, reason: str | None = None) -> int:
        index, self._next = self._next, self._next + 1
        self._session.settle(index, outcome, reason)
        return index

    @property
    def finished(self) -> bool:
        return self._position >= len(self.files)

    def close(self) -> None:
        pass
