import numpy as np
import pytest

from edge.preprocess import (
    OVERLAY_REGIONS,
    black_out,
    black_out_overlays,
    prepare,
)


@pytest.mark.parametrize("shape", [(430, 512), (476, 512), (410, 512), (1080, 1350), (64, 64)])
def test_blacked_out_overlays_preprocess_like_the_frame_as_it_is(shape):
    # The neutralisation covers every README overlay region, so a model never sees them:
    # a frame with them blacked out must give the very same input tensor.
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.array_equal(prepare(frame, 128), prepare(black_out_overlays(frame), 128))


def test_each_overlay_region_alone_changes_nothing():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (430, 512, 3), dtype=np.uint8)
    for box in OVERLAY_REGIONS.values():
        assert np.array_equal(prepare(frame, 96), prepare(black_out(frame, [box]), 96))


def test_mucosa_in_the_centre_reaches_the_model():
    frame = np.zeros((430, 512, 3), dtype=np.uint8)
    changed = frame.copy()
    changed[200:230, 300:330] = 255
    assert not np.array_equal(prepare(frame, 128), prepare(changed, 128))


def test_output_shape_and_corners():
    frame = np.full((430, 512, 3), 200, dtype=np.uint8)
    out = prepare(frame, 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    for y, x in [(0, 0), (0, 127), (127, 0), (127, 127)]:
        assert out[y, x].tolist() == [0, 0, 0]
    assert out[64, 100].tolist() == [200, 200, 200]


def test_refuses_a_non_rgb_array():
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare(np.zeros((10, 10), dtype=np.uint8), 32)
