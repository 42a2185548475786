"""Shared fixtures: synthetic frames written to disk, a tiny model trained and converted
by the real convert pipeline, and the real data where it is present.

Markers (registered in pyproject.toml) follow from the fixtures a test takes: ``tiny_run``
and ``tiny_detector`` make it ``tensorflow`` and ``slow``, ``lean_python`` makes it
``slow``, ``hyper_kvasir`` makes it ``data``; modules and tests mark the rest themselves.
``--no-tensorflow`` runs as if tensorflow and keras were not installed: importing them
fails, and the tests marked ``tensorflow`` are skipped."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from tests import mounts

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HYPER_KVASIR = SHARED_DATA / "hyper-kvasir"

TINY_CLASSES = ("mucosa", "stool")

HOST_ONLY = ("tensorflow", "keras", "tf_keras")
MARKS_OF_FIXTURES = {
    "tiny_run": ("tensorflow", "slow"),
    "tiny_detector": ("tensorflow", "slow"),
    "lean_python": ("slow",),
    "hyper_kvasir": ("data",),
}


class NoTensorflow(importlib.abc.MetaPathFinder):
    """Imports of tensorflow and keras fail, as in the lean environment."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.split(".")[0] in HOST_ONLY:
            raise ModuleNotFoundError(f"{fullname} is blocked (--no-tensorflow)", name=fullname)
        return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-tensorflow",
        action="store_true",
        help="fail every import of tensorflow or keras; skip the tests marked tensorflow",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--no-tensorflow"):
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(HOST_ONLY))
        if loaded:
            raise pytest.UsageError(f"--no-tensorflow: {', '.join(loaded)} already imported")
        sys.meta_path.insert(0, NoTensorflow())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--no-tensorflow"):
        without = "tensorflow is blocked (--no-tensorflow)"
    elif importlib.util.find_spec("tensorflow") is None:
        without = "tensorflow is not installed (the convert profile brings it)"
    else:
        without = ""
    for item in items:
        for fixture, marks in MARKS_OF_FIXTURES.items():
            if fixture in item.fixturenames:
                for mark in marks:
                    item.add_marker(mark)
        if without and item.get_closest_marker("tensorflow"):
            item.add_marker(pytest.mark.skip(reason=without))


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
    train(TrainConfig(data=tiny_dataset, arch="edgecnn", out=run, size=32, epochs=10, batch=8))
    report = quantize_run(run, tiny_dataset, tolerance=100.0, calibration=16)
    assert report.passed, report.failure
    return run / "artefacts"


@pytest.fixture(scope="session")
def lean_python() -> Path:
    """The lean on-device environment's python (.venv: edge profile only)."""
    lean = REPO / ".venv" / "bin"
    if not (lean / "capsule-edge").exists():
        pytest.skip("the lean environment .venv is not built (make test builds it)")
    return lean / "python"


@pytest.fixture(scope="session")
def hyper_kvasir() -> Path:
    if not HYPER_KVASIR.is_dir():
        pytest.skip(f"real data not present at {HYPER_KVASIR}")
    return HYPER_KVASIR


# A tiny YOLOv5-shaped model (Conv, C3, SPPF, Detect on strides 8/16/32) with seeded
# random weights, named as yolov5's fused state dict names them.
TINY_YOLO = {
    "nc": 1,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [8, 6, 2, 2]],
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "C3", [8]],
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "SPPF", [8, 5]],
    ],
    "head": [[[3, 4, 6], 1, "Detect", ["nc", "anchors"]]],
}
TINY_YOLO_SHAPES = {
    "model.0.conv": (8, 3, 6, 6),
    "model.1.conv": (8, 8, 3, 3),
    "model.2.cv1.conv": (4, 8, 1, 1),
    "model.2.cv2.conv": (4, 8, 1, 1),
    "model.2.cv3.conv": (8, 8, 1, 1),
    "model.2.m.0.cv1.conv": (4, 4, 1, 1),
    "model.2.m.0.cv2.conv": (4, 4, 3, 3),
    "model.3.conv": (8, 8, 3, 3),
    "model.4.conv": (8, 8, 3, 3),
    "model.5.conv": (8, 8, 3, 3),
    "model.6.cv1.conv": (4, 8, 1, 1),
    "model.6.cv2.conv": (8, 16, 1, 1),
    "model.7.m.0": (18, 8, 1, 1),
    "model.7.m.1": (18, 8, 1, 1),
    "model.7.m.2": (18, 8, 1, 1),
}


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 and int8 LiteRT models of a tiny random YOLOv5 at 64 px, each with its card,
    made by the real Keras port and converter."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from convert.quantize_detector import card_fields
    from convert.tflite import write_tflite
    from convert.yolov5_keras import build
    from edge.models.card import write_card

    rng = np.random.default_rng(3)
    weights = {}
    for name, shape in TINY_YOLO_SHAPES.items():
        fan_in = shape[1] * shape[2] * shape[3]
        weights[f"{name}.weight"] = rng.normal(0, 1.5 / np.sqrt(fan_in), shape).astype(np.float32)
        weights[f"{name}.bias"] = rng.normal(0, 0.1, shape[0]).astype(np.float32)
    size = 64
    model = build(TINY_YOLO, weights, size)
    out = tmp_path_factory.mktemp("tiny-detector")
    calib = rng.uniform(0, 255, (16, size, size, 3)).astype(np.float32)
    model.export(str(out / "saved_model"), verbose=False)
    write_tflite(out / "saved_model", calib, out, ranges="mean")  # as the detector conversion
    meta = {
        "input_size": size,
        "names": ["polyp"],
        "strides": [8, 16, 32],
        "anchors": np.array(TINY_YOLO["anchors"], np.float32).reshape(3, 3, 2).tolist(),
    }
    for file in ("fp32.tflite", "int8.tflite"):
        write_card(out / file, card_fields(file, "tiny-yolo", meta, {"recipe": "random weights"}))
    return out


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (mounting needs root and CAP_SYS_ADMIN; skipped without them)."""
    with mounts.tmpfs(tmp_path / "disk", "3m") as disk:
        yield disk
