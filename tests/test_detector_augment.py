"""The hospital shifts used to train the polyp detector: each does what it says, keeps the
geometry and the labels, and reaches yolov5's loader when installed."""

from __future__ import annotations

import random
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from convert import detector_augment as aug

Shift = Callable[[np.ndarray], np.ndarray]


@pytest.fixture
def frame() -> np.ndarray:
    """A textured mid-grey frame: something for blur and compression to take away."""
    rng = np.random.default_rng(0)
    base = np.asarray(cv2.resize(rng.integers(60, 200, (32, 32, 3)).astype(np.uint8), (256, 256)))
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def seeded() -> None:
    random.seed(1)
    np.random.seed(1)


def detail(im: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


@pytest.mark.parametrize("shift", list(aug.SHIFTS), ids=lambda f: f.__name__)
def test_every_shift_keeps_the_geometry_and_changes_the_frame(
    shift: Shift, frame: np.ndarray
) -> None:
    out = shift(frame.copy())
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame)


@pytest.mark.parametrize("shift", [aug.blur, aug.compression, aug.resolution])
def test_softening_shifts_take_detail_away(shift: Shift, frame: np.ndarray) -> None:
    assert detail(shift(frame)) < 0.8 * detail(frame)


def test_noise_adds_detail(frame: np.ndarray) -> None:
    assert detail(aug.noise(frame)) > detail(frame)


def test_white_balance_moves_channels_apart(frame: np.ndarray) -> None:
    ratios = [
        aug.white_balance(frame).mean(axis=(0, 1)) / frame.mean(axis=(0, 1)) for _ in range(5)
    ]
    assert max(float(np.ptp(r)) for r in ratios) > 0.05


def test_highlights_are_bright_spots_that_were_not_there(frame: np.ndarray) -> None:
    before = int((frame.min(axis=2) > 230).sum())
    after = int((aug.highlights(frame).min(axis=2) > 230).sum())
    assert after > before + 10


def test_vignette_darkens_the_rim_not_the_centre(frame: np.ndarray) -> None:
    out = aug.vignette(frame).astype(int) - frame
    assert out[:16, :16].mean() < -5
    assert abs(out[120:136, 120:136].mean()) < 1


def test_labels_pass_through_and_p0_leaves_the_frame(frame: np.ndarray) -> None:
    labels = np.array([[0, 0.5, 0.5, 0.2, 0.2]])
    shifts = aug.HospitalShifts(256)
    same, kept = shifts(frame.copy(), labels, p=0.0)
    assert kept is labels and np.array_equal(same, frame)
    changed = [not np.array_equal(shifts(frame.copy(), labels)[0], frame) for _ in range(20)]
    assert sum(changed) >= 15  # P(no shift at all) is about 0.1


def test_install_reaches_yolov5s_loader() -> None:
    dataloaders = pytest.importorskip("yolov5.utils.dataloaders")
    aug.install()
    assert dataloaders.Albumentations is aug.HospitalShifts
