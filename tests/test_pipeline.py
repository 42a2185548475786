"""The pipeline's pieces: frame decoding by codec, and the backlog's skip policies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.errors import BadInputError
from edge.runtime.backlog import Backlog, Work
from edge.runtime.inference import decode_frame
from edge.study.store import FrameRef
from firmware_bridge.protocol import Codec


class _Frame:
    def __init__(self, codec: int, data: bytes, width: int = 0, height: int = 0, index: int = 0):
        self.ref = FrameRef(1, index, 1, 0, len(data), codec, width, height, None)
        self.data = data
        self.work = Work(self.ref, 0.0)


def _work(codec: int, data: bytes, width: int = 0, height: int = 0, index: int = 0) -> _Frame:
    return _Frame(codec, data, width, height, index)


def _decode(frame: _Frame) -> np.ndarray:
    return decode_frame(frame.ref, frame.data)


def test_every_codec_decodes_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 255, (36, 40, 3), dtype=np.uint8)
    assert np.array_equal(_decode(_work(Codec.RAW_RGB, rgb.tobytes(), 40, 36)), rgb)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok and np.array_equal(_decode(_work(Codec.PNG, png.tobytes())), rgb)
    bayer = np.full((36, 40), 200, np.uint8)
    out = _decode(_work(Codec.RAW_BAYER, bayer.tobytes(), 40, 36))
    assert out.shape == (36, 40, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("work", "message"),
    [
        (_work(Codec.RAW_RGB, bytes(10), 8, 6), "10 raw bytes do not make a 8x6 frame"),
        (_work(Codec.RAW_RGB, bytes(0), 0, 0), "do not make a 0x0 frame"),
        (_work(Codec.JPEG, b"\xff\xd8 not really"), "frame 1:0"),
        (_work(9, b"abc"), "unknown codec 9"),
    ],
)
def test_undecodable_frames_say_which_and_why(work: _Frame, message: str):
    with pytest.raises(BadInputError, match=message):
        _decode(work)


def test_backlog_policies():
    oldest, newest = Backlog(2, "skip-oldest"), Backlog(2, "skip-newest")
    for backlog in (oldest, newest):
        assert backlog.put(_work(1, b"", index=0).work) is None
        assert backlog.put(_work(1, b"", index=1).work) is None
    gone = oldest.put(_work(1, b"", index=2).work)
    assert gone is not None and gone.ref.index == 0
    refused = newest.put(_work(1, b"", index=2).work)
    assert refused is not None and refused.ref.index == 2
    assert [w.ref.index for w in (oldest.get(0), oldest.get(0))] == [1, 2]
    assert [w.ref.index for w in (newest.get(0), newest.get(0))] == [0, 1]
    oldest.close()
    assert oldest.get(1.0) is None  # closed and empty: no wait
