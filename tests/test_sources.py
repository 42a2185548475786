"""Frame sources behind one interface: folder replay, video files, and the link over TCP."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli.simulate import spawn_simulator
from edge.errors import BadInputError
from edge.runtime.sources import DirSource, LinkSource, VideoSource, open_source
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Codec
from firmware_bridge.simulator import frame_bytes
from tests.conftest import synthetic_frame, write_rgb


def drain(source, limit: int = 10_000) -> list:  # type: ignore[no-untyped-def]
    frames = []
    for _ in range(limit):
        got = source.poll()
        frames += got
        for f in got:
            source.confirm(f)
        if source.finished:
            break
    return frames


def test_folder_replay_accounts_for_every_file(tmp_path: Path):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_rgb(tmp_path / f"f{i}.jpg", synthetic_frame("mucosa", rng))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_source(f"dir://{tmp_path}")
    assert isinstance(source, DirSource) and source.recording
    frames = drain(source)
    assert [f.data for f in frames] == [(tmp_path / f"f{i}.jpg").read_bytes() for i in range(3)]
    ledger = source.ledger.sessions[0]
    assert ledger.counts() == {"DELIVERED": 3, "LOST(not an image file)": 1}


def test_video_file_frames_are_decoded_and_counted(tmp_path: Path):
    path = tmp_path / "study.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (96, 80))
    for i in range(10):
        writer.write(np.full((80, 96, 3), 20 * i, np.uint8))
    writer.release()
    source = open_source(str(path))
    assert isinstance(source, VideoSource) and source.recording  # a file, read at full speed
    frames = drain(source)
    assert len(frames) == 10 and source.finished
    # Archived as the JPEG that inference will decode, each known by name and number.
    first = cv2.imdecode(np.frombuffer(frames[0].data, np.uint8), cv2.IMREAD_COLOR)
    assert first.shape == (80, 96, 3) and frames[0].codec == int(Codec.JPEG)
    assert [f.origin for f in frames] == [f"study.mp4#{n}" for n in range(10)]
    assert source.ledger.sessions[0].counts() == {"DELIVERED": 10}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("serial:///dev/ttyACM0?baud=fast", "baud must be a number"),
        ("ftp://recorder", "unknown source"),
        ("video://nowhere.mp4", "not a video device or file"),
        ("dir://nowhere", "no such folder"),
        ("usb://recorder", "expected usb://VID:PID"),
    ],
)
def test_bad_source_urls_say_what_is_wrong(url: str, message: str):
    with pytest.raises(BadInputError, match=message):
        open_source(url)


def test_the_link_over_tcp(tmp_path: Path):
    proc, url = spawn_simulator(
        *("--listen", "0", "--count", "20", "--size", "5000", "--fps", "0"),
        # As in test_link_pty: a busy machine may starve the host a while.
        *("--linger", "10"),
    )
    assert url.startswith("socket://127.0.0.1:")
    source = open_source(url)
    assert isinstance(source, LinkSource)
    got = {}
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline
        for frame in source.poll():
            got[frame.index] = frame.data
            source.confirm(frame)
    source.close()
    proc.communicate(timeout=10)
    assert got == {i: frame_bytes(0, i, 5000) for i in range(20)}
    assert {Outcome(o) for o in source.ledger.sessions[1].outcomes} == {Outcome.DELIVERED}


@pytest.mark.parametrize(
    ("url", "chunk", "expected"),
    [
        ("serial:///dev/ttyACM9", 0, 1024),  # a UART: a bit error costs one small chunk
        ("socket://127.0.0.1:9", 0, 1024),
        ("usb://1234:5678", 0, 16384),  # USB bulk is checked in hardware: bigger chunks
        ("serial:///dev/ttyACM9", 4096, 4096),  # what the settings say wins
    ],
)
def test_the_chunk_size_a_link_accepts(url: str, chunk: int, expected: int):
    source = open_source(url, chunk=chunk)
    assert isinstance(source, LinkSource)
    assert source.link.chunk_size == expected
    assert not source.recording  # a recorder sets the pace
