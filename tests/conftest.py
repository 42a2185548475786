"""Shared fixtures: synthetic frames written to disk, a tiny model trained and converted
by the real convert pipeline, and the real data where it is present."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HYPER_KVASIR = SHARED_DATA / "hyper-kvasir"

TINY_CLASSES = ("mucosa", "stool")


def synthetic_frame(label: str, rng: np.random.Generator, width: int = 200, height: int = 168):
    """RGB frame: reddish mucosa, or the same with yellow lumps; overlays drawn on top."""
    base = np.array([190, 80, 70] if label == "mucosa" else [200, 170, 40], dtype=np.float32)
    frame = base * rng.uniform(0.8, 1.1, (height, width, 1)).astype(np.float32)
    frame += rng.normal(0, 10, (height, width, 3))
    image = np.clip(frame, 0, 255).astype(np.uint8)
    # A text band and an inset that would give the class away if they were not removed.
    cv2.putText(image, label, (2, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    image[int(0.62 * height) :, : int(0.3 * width)] = (0, 255, 0) if label == "stool" else 0
    return image


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HyperKvasir-shaped tree of synthetic frames, 24 per class."""
    root = tmp_path_factory.mktemp("tiny-data")
    rng = np.random.default_rng(7)
    for label in TINY_CLASSES:
        for i in range(24):
            write_rgb(
                root / "lower-gi-tract" / "findings" / label / f"{label}-{i:02d}.jpg",
                synthetic_frame(label, rng),
            )
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny edgecnn trained for a few epochs and converted to every artefact."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from convert.quantize import quantize_run
    from convert.train_classifier import TrainConfig, train

    run = tmp_path_factory.mktemp("tiny-run")
    train(TrainConfig(data=tiny_dataset, arch="edgecnn", out=run, size=32, epochs=6, batch=8))
    report = quantize_run(run, tiny_dataset, tolerance=100.0, calibration=16)
    assert report.passed, report.failure
    return run / "artefacts"


@pytest.fixture(scope="session")
def hyper_kvasir() -> Path:
    if not HYPER_KVASIR.is_dir():
        pytest.skip(f"real data not present at {HYPER_KVASIR}")
    return HYPER_KVASIR
