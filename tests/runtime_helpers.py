"""What the runtime's tests share: the bundled models, a folder of frames, the study's
database, a core count to pretend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.bundled import models_root
from edge.runtime import config as settings

CLASSIFIER = models_root() / "classifier" / "edgecnn" / "int8.tflite"
DETECTOR = models_root() / "detector" / "yolov5s-256" / "int8.tflite"
MODELS = ["--classifier-model", str(CLASSIFIER), "--detector-model", str(DETECTOR)]
CORES = 3  # what this machine is said to have (os.cpu_count patched), whatever it has


def study_db(study: Path) -> sqlite3.Connection:
    return sqlite3.connect(study / "study.db")


def frame_folder(tiny_dataset: Path, tmp_path: Path, n: int) -> Path:
    """``n`` JPEG frames, the tiny dataset's taken in turn, as 000.jpg, 001.jpg, ..."""
    frames = tmp_path / "frames"
    frames.mkdir()
    files = sorted(tiny_dataset.rglob("*.jpg"))
    for i in range(n):
        (frames / f"{i:03d}.jpg").write_bytes(files[i % len(files)].read_bytes())
    return frames


def classifier_only() -> settings.Config:
    return settings.load(None, {"classifier.model": str(CLASSIFIER), "detector.enabled": False})
