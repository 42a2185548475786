"""Affine (de)quantisation, done once and explicitly, in int64 before scaling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge.backends.base import Quantization


def quantize(values: npt.NDArray[np.floating], q: Quantization, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    scaled = np.round(values.astype(np.float64) / q.scale) + q.zero_point
    return np.clip(scaled, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, q: Quantization) -> npt.NDArray[np.float32]:
    return (q.scale * (values.astype(np.int64) - q.zero_point)).astype(np.float32)
