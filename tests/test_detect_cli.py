"""``capsule-edge detect`` and ``eval detect`` in the lean environment: images, a real
video file in and an annotated video out, bad inputs, and the evaluation's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import synthetic_frame, write_rgb

FORBIDDEN = ("tensorflow", "torch", "keras", "convert")


def _run(python: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"""
import sys
from edge.cli import main
rc = main({args!r})
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print("RESULT", rc, loaded, file=sys.stderr)
"""
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd)


def _make_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = synthetic_frame("mucosa" if i % 2 else "stool", rng, *size)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_in_annotated_video_out(lean_python: Path, tiny_detector: Path, tmp_path: Path):
    video = tmp_path / "study.mp4"
    _make_video(video, frames=12, size=(160, 128))
    image = write_rgb(
        tmp_path / "frames" / "one.jpg", synthetic_frame("mucosa", np.random.default_rng(1))
    )
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    proc = _run(
        lean_python,
        [
            "detect",
            str(video),
            str(image.parent),
            str(tmp_path / "broken.mp4"),
            "--model",
            str(tiny_detector / "int8.tflite"),
            "--conf",
            "0.05",
            "--save-dir",
            str(out),
        ],
        tmp_path,
    )
    assert "RESULT 0 []" in proc.stderr, proc.stderr[-2000:]
    annotated = cv2.VideoCapture(str(out / "study.detections.mp4"))
    assert annotated.isOpened()
    count = 0
    while True:
        ok, frame = annotated.read()
        if not ok:
            break
        assert frame.shape == (128, 160, 3)
        count += 1
    assert count == 12
    assert cv2.imread(str(out / "one.detections.jpg")) is not None
    assert f"{tmp_path / 'broken.mp4'}\tskipped\tnot a video OpenCV can read" in proc.stdout
    assert "13 frames" in proc.stderr  # 12 video frames and one image


def test_boxes_are_drawn_where_detected(tiny_detector: Path):
    from edge.annotate import draw
    from edge.types import BBox, Detection, Detections

    frame = np.zeros((100, 120, 3), np.uint8)
    found = Detections(120, 100, (Detection(BBox(20, 30, 80, 90), 0.87, "polyp", 0),))
    drawn = draw(frame, found)
    assert (frame == 0).all()  # the input is left alone
    assert drawn[60, 20].any() and drawn[60, 80].any()  # left and right edges
    assert not drawn[60, 50].any()  # inside the box stays as it was


def _kvasir_seg_folder(root: Path) -> Path:
    """Six synthetic frames in the Kvasir-SEG layout: four with a box, two without."""
    rng = np.random.default_rng(9)
    entries = {}
    for i in range(6):
        frame = synthetic_frame("mucosa", rng, 160, 128)
        boxes = []
        if i < 4:
            cv2.circle(frame, (60 + 5 * i, 60), 20, (250, 200, 190), -1)
            boxes = [
                {"label": "polyp", "xmin": 40 + 5 * i, "ymin": 40, "xmax": 80 + 5 * i, "ymax": 80}
            ]
        write_rgb(root / "images" / f"f{i}.jpg", frame)
        entries[f"f{i}"] = {"height": 128, "width": 160, "bbox": boxes}
    (root / "kavsir_bboxes.json").write_text(json.dumps(entries))
    return root


def test_eval_detect_writes_the_expected_json(
    lean_python: Path, tiny_detector: Path, tmp_path: Path
):
    data = _kvasir_seg_folder(tmp_path / "kvasir-seg")
    result = tmp_path / "eval.json"
    proc = _run(
        lean_python,
        [
            "eval",
            "detect",
            "--data",
            str(data),
            "--model",
            str(tiny_detector / "int8.tflite"),
            "--json",
            str(result),
        ],
        tmp_path,
    )
    assert "RESULT 0 []" in proc.stderr, proc.stderr[-2000:]
    doc = json.loads(result.read_text())
    assert {"map50", "map50_95", "precision", "recall", "n_images"} <= set(doc)
    assert doc["n_images"] == 4 and doc["n_boxes"] == 4 and doc["n_background"] == 2
    assert 0.0 <= doc["map50_95"] <= doc["map50"] <= 1.0
    assert doc["fp_frames_per_100_background"] in (0.0, 50.0, 100.0)
    assert "mAP@0.5" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["detect", "nowhere.mp4", "--model", "MODEL"], "nowhere.mp4\tskipped\tno such video file"),
        (
            ["eval", "detect", "--data", "missing", "--model", "MODEL"],
            "missing: neither a Kvasir-SEG folder",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    tiny_detector: Path, tmp_path: Path, args: list[str], message: str
):
    args = [str(tiny_detector / "int8.tflite") if a == "MODEL" else a for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; from edge.cli import main; sys.exit(main({args!r}))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
