"""The bundled polyp detector on the real validation split (skips without the data).

- int8 LiteRT and int8 OpenVINO reach mAP@0.5 >= 0.80, within 1.5 points of fp32;
- int8 boxes match fp32 boxes on the same frames at IoU >= 0.9 for >= 95 % of matched
  detections. The fp32 reference is the decoded-layout ONNX (yolov5's own Detect), the
  int8 models are raw heads decoded in numpy: the test covers the decode too.
"""

from __future__ import annotations

import pytest

from edge.bundled import DEFAULTS, models_root
from edge.eval.detection_metrics import box_parity
from edge.eval.detector import DetectionEval, evaluate_detector
from edge.models.detector import Detector
from edge.types import Detections
from tests.conftest import HYPER_KVASIR, SHARED_DATA

FOLDER = models_root() / DEFAULTS["detection"]
KVASIR_SEG = SHARED_DATA / "kvasir-seg"
SPLIT = models_root() / DEFAULTS["classification"] / "split.json"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.data,
    pytest.mark.skipif(not (FOLDER / "int8.tflite").is_file(), reason="no bundled detector"),
    pytest.mark.skipif(not KVASIR_SEG.is_dir(), reason=f"real data not present at {KVASIR_SEG}"),
]


@pytest.fixture(scope="module")
def evaluations() -> dict[str, DetectionEval]:
    out = {}
    for file, backend in (
        ("fp32.onnx", "onnxruntime"),
        ("int8.tflite", "litert"),
        ("int8.xml", "openvino"),
    ):
        with Detector.open(FOLDER / file, backend) as det:
            out[file] = evaluate_detector(det, KVASIR_SEG, SPLIT, HYPER_KVASIR)
    return out


@pytest.mark.parametrize("int8", ["int8.tflite", "int8.xml"])
def test_int8_detector_is_accurate(evaluations: dict[str, DetectionEval], int8: str):
    fp32, got = evaluations["fp32.onnx"].summary, evaluations[int8].summary
    assert got.n_images >= 150
    assert got.map50 >= 0.80, got
    assert fp32.map50 - got.map50 <= 0.015, (fp32.map50, got.map50)


@pytest.mark.parametrize("int8", ["int8.tflite", "int8.xml"])
def test_int8_boxes_match_fp32(evaluations: dict[str, DetectionEval], int8: str):
    def operating(e: DetectionEval) -> list[Detections]:
        return [d.above(0.25) for d in e.detections]

    parity, matched = box_parity(operating(evaluations["fp32.onnx"]), operating(evaluations[int8]))
    assert matched >= 100
    assert parity >= 0.95, (parity, matched)
