"""The appearance of a box, for linking it across frames (``edge.reading.events``): the
hue-saturation histogram of the box and of a ring around it, and a distance between two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the frame's pixels
FloatArray = npt.NDArray[np.float32]

# Hue in OpenCV's 0-180, turned by 30 so that the reds of mucosa (170-180 and 0-30) are
# one run: 12 fine bins over them, 4 coarse ones over the rest; saturation in 8 bins.
_HUE = (np.arange(180) + 30) % 180
HUE_BIN = np.where(_HUE < 60, _HUE // 5, 12 + (_HUE - 60) // 30).astype(np.intp)
H_BINS, S_BINS = 16, 8
# The same binning as a table for cv2.LUT (hue never exceeds 179), so that cv2.calcHist
# counts both histograms: six times faster than numpy's fancy indexing and bincount on a
# 250-px box of a 600x500 frame, the same counts.
_HUE_LUT = np.zeros(256, np.uint8)
_HUE_LUT[:180] = HUE_BIN
RING = 0.5  # the ring reaches this share of the box's width (height) beyond each side
MIN_V = 30  # darker pixels (a capsule frame's black surround) are not counted
BOX_WEIGHT = 0.5  # the box's share of the appearance distance; the ring has the rest


def checked_box(box: Sequence[float], where: str) -> Box:
    if len(box) != 4:
        raise ValueError(f"{where}: a box is (x0, y0, x1, y1), got {len(box)} values")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"{where}: box {tuple(box)} is not finite")
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{where}: box {tuple(box)} has x1 < x0 or y1 < y0")
    return x0, y0, x1, y1


def _hist(hue_bins: np.ndarray, saturation: np.ndarray, mask: np.ndarray) -> FloatArray:
    """The hue-bin x saturation histogram of the pixels under ``mask`` (uint8, 0 or 255),
    hue-major: index hue_bin * S_BINS + saturation * S_BINS // 256."""
    counts = cv2.calcHist(
        [hue_bins, saturation], [0, 1], mask, [H_BINS, S_BINS], [0, H_BINS, 0, 256]
    )
    hist = np.asarray(counts, np.float32).reshape(-1)
    total = float(hist.sum())
    return hist / total if total > 0 else np.full(hist.size, 1.0 / hist.size, np.float32)


def box_feature(image_bgr: np.ndarray, box: Sequence[float], *, rgb: bool = False) -> FloatArray:
    """The appearance descriptor of ``box`` in a uint8 frame (BGR; ``rgb=True`` for RGB,
    as ``edge.frames`` decodes them): the hue-saturation histogram of the box, then that
    of a ring around it, each summing to 1. Use one channel order for a whole study."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"box_feature needs an HxWx3 uint8 frame, got {image_bgr.shape}")
    x0, y0, x1, y1 = checked_box(box, "box_feature")
    height, width = image_bgr.shape[:2]
    if x0 > width or y0 > height or x1 < 0 or y1 < 0:
        raise ValueError(f"box_feature: box {tuple(box)} lies outside the {width}x{height} frame")
    # At least one pixel, inside the frame: a box clipped to an edge may have no area.
    bx0, by0 = min(max(0, math.floor(x0)), width - 1), min(max(0, math.floor(y0)), height - 1)
    bx1, by1 = max(min(width, math.ceil(x1)), bx0 + 1), max(min(height, math.ceil(y1)), by0 + 1)
    dx, dy = RING * max(x1 - x0, 2.0), RING * max(y1 - y0, 2.0)
    rx0, ry0 = max(0, math.floor(x0 - dx)), max(0, math.floor(y0 - dy))
    rx1, ry1 = min(width, math.ceil(x1 + dx)), min(height, math.ceil(y1 + dy))
    window = np.ascontiguousarray(image_bgr[ry0:ry1, rx0:rx1])
    hsv = cv2.cvtColor(window, cv2.COLOR_RGB2HSV if rgb else cv2.COLOR_BGR2HSV)
    hue, saturation, value = cv2.split(hsv)
    hue_bins = cv2.LUT(hue, _HUE_LUT)
    bright = np.where(value >= MIN_V, np.uint8(255), np.uint8(0))  # calcHist's masks
    inside = (slice(by0 - ry0, by1 - ry0), slice(bx0 - rx0, bx1 - rx0))
    inner = np.zeros_like(bright)
    inner[inside] = bright[inside]
    ring = bright.copy()
    ring[inside] = 0
    box_hist = _hist(hue_bins, saturation, inner)
    return np.concatenate([box_hist, _hist(hue_bins, saturation, ring) if ring.any() else box_hist])


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """0 (alike) to 1 (nothing in common) between two :func:`box_feature` descriptors:
    the Bhattacharyya distances of the boxes' and of the rings' histograms, weighted."""
    if a.shape != b.shape or a.size % 2:
        raise ValueError(f"descriptors differ in shape: {a.shape} and {b.shape}")
    n = a.size // 2
    coeff = np.sqrt(a * b)
    d_box, d_ring = (math.sqrt(max(0.0, 1.0 - float(c.sum()))) for c in (coeff[:n], coeff[n:]))
    return BOX_WEIGHT * d_box + (1.0 - BOX_WEIGHT) * d_ring
