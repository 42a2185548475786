"""The detector robustness proxy: every shift keeps the frame's size (so the ground truth
holds), is the same for the same frame, and the zoomed-out view maps boxes back."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detector_robustness import SHIFTS, ZoomedOut
from edge.types import BBox, Detection, Detections


class RedFinder:
    """A detector with a known answer: the bounding box of the pure-red pixels."""

    conf_threshold = 0.25

    def detect(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        red = (frame[..., 0] > 200) & (frame[..., 1] < 50) & (frame[..., 2] < 50)
        ys, xs = np.nonzero(red)
        if not len(xs):
            return Detections(w, h, ())
        box = BBox(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return Detections(w, h, (Detection(box, 0.9, "red", 0),))


@pytest.fixture
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 180, (120, 160, 3), dtype=np.uint8)
    image[..., 0] = np.minimum(image[..., 0], 150)  # no red in the background
    image[40:80, 60:100] = (255, 0, 0)
    return image


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_keeps_the_size_and_is_repeatable(name: str, frame: np.ndarray) -> None:
    shifted = SHIFTS[name](frame)
    assert shifted.shape == frame.shape and shifted.dtype == np.uint8
    assert np.array_equal(SHIFTS[name](frame), shifted)
    if name != "none":
        assert not np.array_equal(shifted, frame)


@pytest.mark.parametrize("factor", [0.7, 0.5])
def test_zoomed_out_boxes_come_back_to_the_frame(factor: float, frame: np.ndarray) -> None:
    finder = RedFinder()
    zoomed = ZoomedOut(finder, factor)  # type: ignore[arg-type]
    seen = zoomed.detect(frame).items[0].box
    truth = BBox(60, 40, 100, 80)
    # Within a pixel of the shrunk frame, scaled back up.
    assert abs(seen.x0 - truth.x0) <= 1 / factor + 1 and abs(seen.x1 - truth.x1) <= 1 / factor + 1
    assert abs(seen.y0 - truth.y0) <= 1 / factor + 1 and abs(seen.y1 - truth.y1) <= 1 / factor + 1
    zoomed.conf_threshold = 0.5  # evaluate_detector sets it on the detector underneath
    assert finder.conf_threshold == 0.5
