"""``capsule-edge detect`` and ``eval detect`` on the bundled detector (no tensorflow):
images, a real video file in and an annotated video out, bad inputs and names OpenCV
cannot take, and an evaluation whose numbers are checked against pycocotools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundled import models_root
from edge.eval.detection_metrics import ImageResult
from edge.eval.detector import EVAL_CONF
from edge.frames import read_image
from edge.models.detector import Detector
from edge.types import BBox
from tests.conftest import HYPER_KVASIR, REPO, SHARED_DATA, synthetic_frame, write_rgb
from tests.test_detection_metrics import coco_ap

FORBIDDEN = ("tensorflow", "torch", "keras", "convert")
YOLO = models_root() / "detector" / "yolov5s-256"
KVASIR_SEG = SHARED_DATA / "kvasir-seg"
ODD = os.fsdecode(b"caf\xe9")  # a name that is not UTF-8 (Latin-1 bytes)


def _run(python: Path | str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"""
import sys
from edge.cli import main
rc = main({args!r})
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print("RESULT", rc, loaded, file=sys.stderr)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, errors="replace"
    )


def _make_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = synthetic_frame("mucosa" if i % 2 else "stool", rng, *size)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_in_annotated_video_out(lean_python: Path, tmp_path: Path):
    video = tmp_path / "study.mp4"
    _make_video(video, frames=12, size=(160, 128))
    image = write_rgb(
        tmp_path / "frames" / "one.jpg", synthetic_frame("mucosa", np.random.default_rng(1))
    )
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    args = ["detect", str(video), str(image.parent), str(tmp_path / "broken.mp4")]
    proc = _run(lean_python, [*args, "--conf", "0.05", "--save-dir", str(out)], tmp_path)
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


def test_names_opencv_cannot_take_are_never_a_crash(tmp_path: Path):
    """A name that is not UTF-8 crashed OpenCV (a segfault): an image is written through
    imencode under its own name, a video is one line saying why it is skipped."""
    frames = tmp_path / "frames"
    write_rgb(frames / "plain.jpg", synthetic_frame("mucosa", np.random.default_rng(1)))
    os.rename(frames / "plain.jpg", frames / f"{ODD}.jpg")
    video = tmp_path / "study.mp4"
    _make_video(video, frames=3, size=(96, 64))
    odd_video = tmp_path / f"{ODD}.mp4"
    shutil.copyfile(video, odd_video)
    out = tmp_path / "out"
    proc = _run(
        sys.executable, ["detect", str(frames), str(odd_video), "--save-dir", str(out)], tmp_path
    )
    assert proc.returncode == 0 and "RESULT 0" in proc.stderr, proc.stderr[-2000:]
    written = out / f"{ODD}.detections.jpg"
    assert read_image(written).shape == (168, 200, 3)
    assert "whose name is not UTF-8 (rename it)" in proc.stdout
    assert "1 frames, " in proc.stderr and "1 inputs skipped" in proc.stderr
    # A folder for the annotated video that OpenCV cannot take: the video is skipped.
    odd_out = tmp_path / f"{ODD}-out"
    proc = _run(sys.executable, ["detect", str(video), "--save-dir", str(odd_out)], tmp_path)
    assert "RESULT 1" in proc.stderr, proc.stderr[-2000:]
    assert "OpenCV cannot open a video to write whose name is not UTF-8" in proc.stdout


def test_boxes_are_drawn_where_detected():
    from edge.annotate import draw
    from edge.types import Detection, Detections

    frame = np.zeros((100, 120, 3), np.uint8)
    found = Detections(120, 100, (Detection(BBox(20, 30, 80, 90), 0.87, "polyp", 0),))
    drawn = draw(frame, found)
    assert (frame == 0).all()  # the input is left alone
    assert drawn[60, 20].any() and drawn[60, 80].any()  # left and right edges
    assert not drawn[60, 50].any()  # inside the box stays as it was


def _kvasir_seg_folder(root: Path) -> dict[str, list[BBox]]:
    """Four polyp frames with their boxes, two polyp-free frames and one whose only box
    has no area, in the Kvasir-SEG layout: real frames where ../shared/data is present."""
    entries: dict[str, dict] = {}
    (root / "images").mkdir(parents=True)
    if KVASIR_SEG.is_dir() and HYPER_KVASIR.is_dir():
        real = json.loads((KVASIR_SEG / "kavsir_bboxes.json").read_text())
        for name in sorted(real)[:5]:
            shutil.copyfile(KVASIR_SEG / "images" / f"{name}.jpg", root / "images" / f"{name}.jpg")
            entries[name] = real[name]
        others = sorted((HYPER_KVASIR / "labeled-images" / "lower-gi-tract").rglob("cecum/*.jpg"))
        for i, path in enumerate(others[:2]):
            shutil.copyfile(path, root / "images" / f"bg{i}.jpg")
            entries[f"bg{i}"] = {"height": 1, "width": 1, "bbox": []}
    else:
        rng = np.random.default_rng(9)
        for i in range(7):
            frame = synthetic_frame("mucosa", rng, 160, 128)
            boxes = []
            if i < 5:
                cv2.circle(frame, (60 + 5 * i, 60), 20, (250, 200, 190), -1)
                boxes = [
                    {
                        "label": "polyp",
                        "xmin": 40 + 5 * i,
                        "ymin": 40,
                        "xmax": 80 + 5 * i,
                        "ymax": 80,
                    }
                ]
            name = f"f{i}" if i < 5 else f"bg{i - 5}"
            write_rgb(root / "images" / f"{name}.jpg", frame)
            entries[name] = {"height": 128, "width": 160, "bbox": boxes}
    # The fifth polyp frame's box made degenerate: it was counted a polyp-free frame.
    fifth = sorted(k for k in entries if not k.startswith("bg"))[4]
    box = entries[fifth]["bbox"][0]
    entries[fifth] = {**entries[fifth], "bbox": [{**box, "xmax": box["xmin"]}]}
    (root / "kavsir_bboxes.json").write_text(json.dumps(entries))
    return {
        k: [BBox(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in v["bbox"]]
        for k, v in entries.items()
        if k != fifth
    }


def test_eval_detect_reports_what_pycocotools_computes(lean_python: Path, tmp_path: Path):
    data = tmp_path / "kvasir-seg"
    truth = _kvasir_seg_folder(data)
    result = tmp_path / "eval.json"
    proc = _run(
        lean_python, ["eval", "detect", "--data", str(data), "--json", str(result)], tmp_path
    )
    assert "RESULT 0 []" in proc.stderr, proc.stderr[-2000:]
    doc = json.loads(result.read_text())
    assert doc["n_images"] == 4 and doc["n_boxes"] == sum(len(b) for b in truth.values())
    assert doc["n_background"] == 2 and doc["set_aside"] == 1
    assert "1 set aside (images whose every box is unusable)" in proc.stdout

    # The same frames through the detector here, scored by COCO's own tooling.
    results, alarms, right = [], 0, 0
    with Detector.open(YOLO / "int8.tflite", conf_threshold=EVAL_CONF) as det:
        for name, boxes in sorted(truth.items()):
            found = det.detect(read_image(data / "images" / f"{name}.jpg"))
            results.append(ImageResult(tuple(boxes), found.items))
            fired = any(d.score >= 0.25 for d in found.items)
            alarms += fired and not boxes
            right += fired == bool(boxes)  # the frame-level decision, "has a box"
    map50, map50_95 = coco_ap(results)
    assert doc["map50"] == pytest.approx(map50, abs=1e-6)
    assert doc["map50_95"] == pytest.approx(map50_95, abs=1e-6)
    assert doc["fp_frames_per_100_background"] == pytest.approx(100.0 * alarms / 2)
    assert doc["frame_accuracy"] == pytest.approx(right / len(truth), abs=1e-4)
    if KVASIR_SEG.is_dir():  # real polyps: the bundled detector finds them
        assert doc["map50"] >= 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["detect", "nowhere.mp4"], "nowhere.mp4\tskipped\tno such video file"),
        (["eval", "detect", "--data", "missing"], "missing: neither a Kvasir-SEG folder"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str):
    proc = _run(sys.executable, args, tmp_path)
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
