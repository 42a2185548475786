"""The detector adapter: letterbox, int8 I/O, YOLOv5 decode, NMS, boxes back in frame pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edge.backends.base import Quantization, TensorSpec
from edge.errors import ModelError
from edge.models.card import ModelCard, load_card
from edge.models.detector import Detector, DetectorSpec, decode_raw, nms
from edge.preprocess import LETTERBOX_ID, LETTERBOX_PAD, letterbox

ANCHORS = [
    [[10, 13], [16, 30], [33, 23]],
    [[30, 61], [62, 45], [59, 119]],
    [[116, 90], [156, 198], [373, 326]],
]
SIZE = 64
# One confident prediction: stride 8, cell (row 2, column 3), anchor 1.
SIGMOIDS = [0.6, 0.3, 0.5, 0.7, 0.9, 0.8]  # x, y, w, h, objectness, class
# By hand: x = (2*0.6 - 0.5 + 3) * 8, y = (2*0.3 - 0.5 + 2) * 8,
#          w = (2*0.5)^2 * 16, h = (2*0.7)^2 * 30
EXPECTED_ROW = [29.6, 16.8, 16.0, 58.8, 0.9, 0.8]


def _heads() -> list[np.ndarray]:
    heads = [np.zeros((1, SIZE // s, SIZE // s, 18), np.float32) for s in (8, 16, 32)]
    heads[0][0, 2, 3, 6:12] = SIGMOIDS  # anchor 1 occupies channels 6..11
    return heads


def _spec() -> DetectorSpec:
    return DetectorSpec("raw", (8, 16, 32), np.asarray(ANCHORS, np.float32))


def test_decode_raw_follows_the_yolov5_formula():
    rows = decode_raw(_heads(), _spec(), SIZE)
    assert rows.shape == ((64 + 16 + 4) * 3, 6)
    index = (2 * 8 + 3) * 3 + 1  # (row, column, anchor) in the first level
    np.testing.assert_allclose(rows[index], EXPECTED_ROW, rtol=1e-6)
    others = np.delete(rows, index, axis=0)
    assert others[:, 4].max() == 0.0


def test_decode_raw_finds_heads_by_their_grid_not_their_order():
    heads = _heads()
    forward = decode_raw(heads, _spec(), SIZE)
    backward = decode_raw(heads[::-1], _spec(), SIZE)
    np.testing.assert_array_equal(forward, backward)


def test_decode_raw_with_a_minimum_score_decodes_only_the_rows_that_can_pass_it():
    rng = np.random.default_rng(0)
    heads = [rng.random(h.shape, dtype=np.float32) for h in _heads()]
    every = decode_raw(heads, _spec(), SIZE)
    best = (every[:, 5:] * every[:, 4:5]).max(axis=1)
    kept = decode_raw(heads, _spec(), SIZE, min_score=0.5)
    assert 0 < len(kept) < len(every)
    np.testing.assert_array_equal(kept, every[best > 0.5])  # the same rows, bit for bit


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.5, 0.9, 0.4, 0.3], np.float32)
    kept = nms(boxes, scores, iou_threshold=0.45)
    assert kept.tolist() == [1, 2]  # 0 and 3 overlap box 1 by more than 0.45
    assert nms(boxes, scores, iou_threshold=0.99).tolist() == [1, 0, 2, 3]


def test_letterbox_keeps_aspect_and_centres_on_grey():
    frame = np.full((100, 200, 3), 200, np.uint8)
    canvas, placed = letterbox(frame, SIZE)
    assert canvas.shape == (SIZE, SIZE, 3)
    assert placed.ratio == pytest.approx(0.32)
    assert (placed.pad_x, placed.pad_y) == (0, 16)
    assert (canvas[:16] == LETTERBOX_PAD).all() and (canvas[48:] == LETTERBOX_PAD).all()
    assert (canvas[16:48] == 200).all()


class FixedHeads:
    """A backend whose int8 outputs are given: the detector around it is under test."""

    def __init__(self, heads: list[np.ndarray]) -> None:
        self.out_q = Quantization(1 / 256, -128)
        self.in_q = Quantization(1.0, -128)
        self._heads = [
            np.clip(np.round(h / self.out_q.scale) + self.out_q.zero_point, -128, 127).astype(
                np.int8
            )
            for h in heads
        ]
        self.received: list[np.ndarray] = []

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return [TensorSpec("image", (1, SIZE, SIZE, 3), np.dtype(np.int8), self.in_q)]

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return [
            TensorSpec(f"head{i}", h.shape, np.dtype(np.int8), self.out_q)
            for i, h in enumerate(self._heads)
        ]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.received.append(inputs[0])
        return list(self._heads)

    def close(self) -> None:
        pass


def _card(**changes: object) -> ModelCard:
    raw = {
        "task": "detection",
        "name": "fixed",
        "format": "tflite",
        "precision": "int8",
        "file": "none.tflite",
        "sha256": "0",
        "labels": ["polyp"],
        "input": {"shape": [1, SIZE, SIZE, 3]},
        "preprocessing": {"id": LETTERBOX_ID},
        "detector": {"layout": "raw", "strides": [8, 16, 32], "anchors": ANCHORS},
        **changes,
    }
    return ModelCard(Path("fixed.card.json"), raw)


def test_detector_quantises_input_decodes_and_maps_boxes_to_the_frame():
    backend = FixedHeads(_heads())
    det = Detector(backend, _card())
    frame = np.full((100, 200, 3), 200, np.uint8)
    found = det.detect(frame)
    # The input: letterboxed, then int8 with zero point -128 (pad 114 -> -14, 200 -> 72).
    tensor = backend.received[0]
    assert tensor.dtype == np.int8 and tensor.shape == (1, SIZE, SIZE, 3)
    assert tensor[0, 0, 0, 0] == LETTERBOX_PAD - 128 and tensor[0, 32, 32, 0] == 200 - 128
    assert len(found) == 1
    hit = found.items[0]
    assert hit.label == "polyp" and hit.class_id == 0
    assert hit.score == pytest.approx(0.9 * 0.8, abs=0.01)
    # Input box 21.6, -12.6, 37.6, 46.2; frame = (input - pad) / 0.32, clipped to the frame.
    step = 1 / 256 / 0.32 * 8 * 2  # one int8 step of a sigmoid, in frame pixels, with margin
    assert hit.box.x0 == pytest.approx(21.6 / 0.32, abs=step)
    assert hit.box.y0 == 0.0
    assert hit.box.x1 == pytest.approx(37.6 / 0.32, abs=step)
    assert hit.box.y1 == pytest.approx((46.2 - 16) / 0.32, abs=step * 4)
    assert (found.width, found.height) == (200, 100)


def test_confidence_threshold_filters():
    det = Detector(FixedHeads(_heads()), _card(), conf_threshold=0.8)
    assert len(det.detect(np.zeros((64, 64, 3), np.uint8))) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"detector": None}, "no 'detector' section"),
        ({"detector": {"layout": "boxes", "strides": [8], "anchors": []}}, "not 'raw' or"),
        ({"detector": {"layout": "raw", "strides": [8, 16], "anchors": ANCHORS}}, "one level per"),
        ({"task": "classification"}, "not detection"),
        ({"preprocessing": {"id": "overlay-neutralise-v1"}}, "is not one of the detector's"),
    ],
)
def test_bad_cards_are_refused_with_the_reason(changes: dict[str, object], message: str):
    with pytest.raises(ModelError, match=message):
        Detector(FixedHeads(_heads()), _card(**changes))


def test_decoded_layout_needs_one_output():
    card = _card(detector={"layout": "decoded", "strides": [8, 16, 32], "anchors": ANCHORS})
    with pytest.raises(ModelError, match="has 1 output"):
        Detector(FixedHeads(_heads()), card)


def test_tiny_model_int8_tracks_fp32_through_litert(tiny_detector: Path):
    frames = [
        np.random.default_rng(i).integers(0, 255, (90 + 10 * i, 120, 3), dtype=np.uint8)
        for i in range(4)
    ]
    with (
        Detector.open(tiny_detector / "fp32.tflite", conf_threshold=0.0) as fp32,
        Detector.open(tiny_detector / "int8.tflite", conf_threshold=0.0) as int8,
    ):
        assert int8.backend.inputs[0].dtype == np.int8
        for frame in frames:
            prepared, _ = fp32.preprocess(frame)
            a, b = fp32.rows(prepared), int8.rows(prepared)
            assert a.shape == b.shape == ((64 + 16 + 4) * 3, 6)
            # Sigmoid outputs: int8 steps of 1/256, a few steps of drift at most.
            assert np.abs(a[:, 4:] - b[:, 4:]).mean() < 0.02
            found = int8.detect(frame)
            for d in found.items:
                assert 0 <= d.box.x0 <= d.box.x1 <= frame.shape[1]
                assert 0 <= d.box.y0 <= d.box.y1 <= frame.shape[0]
    assert load_card(tiny_detector / "int8.tflite").raw["detector"]["layout"] == "raw"


def test_mean_ranges_never_widen_an_int8_step(tiny_detector: Path, tmp_path: Path):
    """The detector's calibration takes the mean of per-frame extremes: no activation
    gets a coarser int8 step than LiteRT's own all-frames extremes would give it."""
    from ai_edge_litert.interpreter import Interpreter

    from convert.tflite import write_tflite

    rng = np.random.default_rng(11)
    calib = rng.uniform(0, 255, (16, 64, 64, 3)).astype(np.float32)
    for ranges in ("minmax", "mean"):
        (tmp_path / ranges).mkdir()
        write_tflite(tiny_detector / "saved_model", calib, tmp_path / ranges, ranges=ranges)
    scales = []
    for ranges in ("minmax", "mean"):
        interpreter = Interpreter(model_path=str(tmp_path / ranges / "int8.tflite"))
        scales.append(
            {
                t["name"]: t["quantization"][0]
                for t in interpreter.get_tensor_details()
                if t["dtype"] == np.int8 and t["quantization"][0]
            }
        )
    minmax, mean = scales
    common = [n for n in mean if n in minmax]
    assert len(common) > 20
    assert all(mean[n] <= minmax[n] * 1.0001 for n in common)
    assert sum(mean[n] < minmax[n] * 0.99 for n in common) > 5
    with pytest.raises(ValueError, match="ranges must be one of"):
        write_tflite(tiny_detector / "saved_model", calib, tmp_path, ranges="median")
