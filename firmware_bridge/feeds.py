"""Frames for the simulated recorder to send: synthetic bytes or the image files of a
folder. Each yields (bytes, codec, width, height). The feeds that need OpenCV (mucosa-
coloured JPEGs, a video's frames) are edge/cli/feeds.py's."""

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
