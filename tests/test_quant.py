"""Input quantisation: the pixel table must give exactly what the arithmetic gives."""

import numpy as np
import pytest

from edge.backends.base import Quantization
from edge.models.quant import dequantize, quantize, quantize_pixels


@pytest.mark.parametrize(
    ("q", "dtype"),
    [
        (Quantization(1 / 255, -128), np.int8),  # the bundled models' input
        (Quantization(1.0, -128), np.int8),
        (Quantization(0.5, 3), np.int8),  # clips at both ends
        (Quantization(1.0, 0), np.uint8),
        (Quantization(0.37, 11), np.int16),  # wider than a byte: no OpenCV table
    ],
)
def test_pixel_table_equals_the_arithmetic(q: Quantization, dtype: type) -> None:
    frames = np.random.default_rng(7).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    frames[0, 0, :3, 0] = (0, 128, 255)
    expected = quantize(frames.astype(np.float32), q, np.dtype(dtype))
    got = quantize_pixels(frames, q, np.dtype(dtype))
    assert got.dtype == expected.dtype and got.shape == frames.shape
    np.testing.assert_array_equal(got, expected)
    # and a strided view, as a crop would give
    view = frames[:, 5:30:2, ::3]
    np.testing.assert_array_equal(
        quantize_pixels(view, q, np.dtype(dtype)),
        quantize(view.astype(np.float32), q, np.dtype(dtype)),
    )


def test_quantize_round_trips_within_half_a_step() -> None:
    q = Quantization(0.02, 5)
    values = np.linspace(-2.0, 2.0, 101, dtype=np.float32)
    back = dequantize(quantize(values, q, np.dtype(np.int8)), q)
    assert np.abs(back - values).max() <= q.scale / 2 + 1e-6
