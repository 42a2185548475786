import ast
import contextlib
import io

import numpy as np
import pytest

from edge.errors import BadInputError
from edge.eval.detection_metrics import (
    ImageResult,
    average_precision,
    pairwise_iou,
    summarise_detections,
)
from edge.types import BBox, Detection
from tests.conftest import REPO


def det(x0: float, y0: float, x1: float, y1: float, score: float) -> Detection:
    return Detection(BBox(x0, y0, x1, y1), score, "polyp", 0)


def image(
    truth: list[tuple[float, float, float, float]], predicted: list[Detection]
) -> ImageResult:
    return ImageResult(tuple(BBox(*b) for b in truth), tuple(predicted))


def coco_ap(results: list[ImageResult]) -> tuple[float, float]:
    """(AP50, AP50:95) from pycocotools' COCOeval on the same boxes and scores."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b: BBox) -> list[float]:
        return [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0]

    images, annotations, detections = [], [], []
    for image_id, result in enumerate(results, start=1):
        images.append({"id": image_id, "width": 640, "height": 480})
        for box in result.truth:
            w, h = box.x1 - box.x0, box.y1 - box.y0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": xywh(box),
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for d in result.predicted:
            detections.append(
                {"image_id": image_id, "category_id": 1, "bbox": xywh(d.box), "score": d.score}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "polyp"}],
        }
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1]), float(evaluation.stats[0])


def hand_made() -> list[ImageResult]:
    return [
        image(
            [(10, 10, 50, 50), (100, 100, 160, 140), (200, 20, 203, 60)],
            [
                det(11, 9, 51, 52, 0.9),  # good match
                det(105, 95, 170, 150, 0.8),  # jittered, IoU ~0.6
                det(201, 20, 204, 61, 0.8),  # degenerate 3-px-wide box, shifted by 1 px
                det(300, 300, 340, 340, 0.7),  # false positive
                det(12, 12, 48, 49, 0.6),  # duplicate of the first: false positive
            ],
        ),
        image([(30, 30, 90, 80)], [det(400, 10, 450, 60, 0.8)]),  # missed box, a false positive
        image([], [det(5, 5, 45, 45, 0.95), det(60, 60, 70, 70, 0.3)]),  # background
        image(
            [(0, 0, 20, 20), (15, 15, 40, 40)], [det(2, 1, 21, 22, 0.3), det(16, 14, 41, 38, 0.3)]
        ),
        image([], []),  # empty background
        image([(50, 60, 80, 100)], []),  # missed entirely
    ]


def random_results(seed: int, n_images: int = 12, crowded: bool = False) -> list[ImageResult]:
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(n_images):
        truth = []
        for _ in range(int(rng.integers(0, 5))):
            x0, y0 = rng.uniform(0, 500, 2)
            w, h = rng.uniform(2, 120, 2)  # some only a few pixels wide
            truth.append((x0, y0, x0 + w, y0 + h))
        predicted = []
        for x0, y0, x1, y1 in truth:
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.15, 4) * [x1 - x0, y1 - y0, x1 - x0, y1 - y0]
                # scores on a coarse grid, so that ties happen within and across images
                score = round(float(rng.uniform(0.05, 1.0)), 1)
                a, b, c, d = np.array([x0, y0, x1, y1]) + jitter
                predicted.append(det(min(a, c), min(b, d), max(a, c), max(b, d), score))
        n_false = int(rng.integers(0, 4)) + (150 if crowded and rng.random() < 0.5 else 0)
        for _ in range(n_false):
            x0, y0 = rng.uniform(0, 500, 2)
            w, h = rng.uniform(5, 100, 2)
            predicted.append(det(x0, y0, x0 + w, y0 + h, round(float(rng.uniform(0, 1)), 2)))
        predicted = [predicted[i] for i in rng.permutation(len(predicted))]
        results.append(image(truth, predicted))
    return results


def ties_on_iou() -> list[ImageResult]:
    # The first detection covers both boxes exactly: IoU 0.5 with each (100 / 200). COCOeval
    # gives it the later box, so the second detection (which only fits that box) is a
    # false positive. Ranked: TP, FP over 2 boxes -> recall 0.5 at precision 1, then
    # nothing: AP50 = 51 / 101 (recall points 0.00..0.50). Had the tie gone to the first
    # box, both would be true positives and AP50 = 1.
    return [
        image([(0, 0, 10, 10), (10, 0, 20, 10)], [det(0, 0, 20, 10, 0.9), det(10, 0, 20, 10, 0.8)])
    ]


def test_ties_on_iou_go_to_the_later_box_as_in_coco():
    assert average_precision(ties_on_iou(), 0.5) == pytest.approx(51 / 101, abs=1e-12)


@pytest.mark.parametrize("reverse", [False, True], ids=["best-box-last", "best-box-first"])
def test_a_detection_takes_the_free_box_it_overlaps_most(reverse: bool):
    # A (0.9) fits the second box exactly (IoU 1) and the first at 80 / 120 = 2/3; B (0.8)
    # overlaps the first at 80 / 120 = 2/3 and the second at 60 / 140 = 0.43. A takes the
    # second box, so B is a TP up to IoU 0.65 and a FP from 0.70: AP is 1 at 0.50..0.65 and
    # 51/101 at 0.70..0.95 (TP then FP). Had A taken the first box (the first one over the
    # threshold, or the last), B would be a FP at 0.50 too. Both box orders are tried.
    truth = [(0, 0, 10, 10), (2, 0, 12, 10)]
    if reverse:
        truth.reverse()
    results = [image(truth, [det(2, 0, 12, 10, 0.9), det(-2, 0, 8, 10, 0.8)])]
    s = summarise_detections(results)
    assert s.map50 == 1.0
    assert s.map50_95 == pytest.approx((4 + 6 * 51 / 101) / 10, abs=1e-12)
    assert average_precision(results, 0.7) == pytest.approx(51 / 101, abs=1e-12)
    assert (s.map50, s.map50_95) == pytest.approx(coco_ap(results), abs=1e-6)


@pytest.mark.parametrize(
    "results",
    [
        pytest.param(hand_made(), id="hand-made"),
        pytest.param(ties_on_iou(), id="ties-on-iou"),
        *(pytest.param(random_results(seed), id=f"random-{seed}") for seed in range(6)),
        pytest.param(random_results(100, n_images=4, crowded=True), id="over-100-per-image"),
    ],
)
def test_ap_matches_pycocotools(results: list[ImageResult]):
    coco50, coco50_95 = coco_ap(results)
    summary = summarise_detections(results)
    assert summary.map50 == pytest.approx(coco50, abs=1e-6)
    assert summary.map50_95 == pytest.approx(coco50_95, abs=1e-6)
    assert average_precision(results, 0.5) == pytest.approx(coco50, abs=1e-6)
    assert 0.0 < coco50 < 1.0  # a case that tests something
    assert coco50_95 < coco50


def test_only_the_100_best_detections_of_an_image_count():
    # 100 false positives outscore the only true positive, which is then dropped: AP 0.
    truth = [(0, 0, 10, 10)]
    noise = [det(100 + i, 100, 110 + i, 110, 0.9) for i in range(100)]
    crowded = [image(truth, [*noise, det(0, 0, 10, 10, 0.5)])]
    assert average_precision(crowded, 0.5) == 0.0
    # The operating point has no such cap: 1 TP and 100 FP over 0.25.
    s = summarise_detections(crowded, conf_threshold=0.25)
    assert (s.map50, s.precision, s.recall) == (0.0, 1 / 101, 1.0)
    # With one fewer, it ranks 100th of 100: precision 1/100 up to recall 1.
    ap = average_precision([image(truth, [*noise[1:], det(0, 0, 10, 10, 0.5)])], 0.5)
    assert ap == pytest.approx(0.01, abs=1e-12)


def test_operating_point_by_hand():
    results = [
        image(
            [(0, 0, 10, 10), (20, 20, 30, 30)],
            [
                det(0, 0, 10, 10, 0.9),  # TP
                det(25, 20, 35, 30, 0.8),  # IoU 50 / 150 = 1/3 with the second box: FP
                det(20, 20, 30, 30, 0.2),  # would be a TP, but under every threshold below
            ],
        ),
        image([(0, 0, 10, 10)], [det(0, 0, 10, 10, 0.3), det(0, 0, 10, 10, 0.25)]),  # TP, dup
        image([], [det(0, 0, 10, 10, 0.5)]),  # background with a detection of 0.5
        image([], [det(0, 0, 10, 10, 0.1)]),  # background, detection below every threshold
        image([], []),  # background, nothing
    ]
    # 0.25: TP 0.9, 0.3; FP 0.8, 0.25 (the box is taken), 0.5 (background) -> P 2/5, R 2/3;
    # one background frame (0.5) of three fires -> 100/3 per 100.
    s = summarise_detections(results, conf_threshold=0.25)
    assert (s.precision, s.recall) == (2 / 5, 2 / 3)
    assert (s.n_images, s.n_boxes, s.n_background) == (2, 3, 3)
    assert s.fp_frames_per_100_background == pytest.approx(100 / 3, abs=1e-12)
    # 0.3 (inclusive): TP 0.9, 0.3; FP 0.8, 0.5 -> P 2/4, R 2/3, still 1 of 3 frames.
    s = summarise_detections(results, conf_threshold=0.3)
    assert (s.precision, s.recall) == (0.5, 2 / 3)
    assert s.fp_frames_per_100_background == pytest.approx(100 / 3, abs=1e-12)
    # 0.6: TP 0.9; FP 0.8 -> P 1/2, R 1/3; no background frame fires.
    s = summarise_detections(results, conf_threshold=0.6)
    assert (s.precision, s.recall, s.fp_frames_per_100_background) == (0.5, 1 / 3, 0.0)
    assert s.as_dict()["conf_threshold"] == 0.6
    assert s.as_dict()["recall"] == 1 / 3
    # 0.95: nothing detected -> precision 0 by convention, recall 0.
    s = summarise_detections(results, conf_threshold=0.95)
    assert (s.precision, s.recall, s.fp_frames_per_100_background) == (0.0, 0.0, 0.0)


def test_frame_level_decision_by_hand():
    """A frame "has a finding" when a box reaches the threshold, whatever it overlaps."""
    results = [
        image([(0, 0, 10, 10)], [det(50, 50, 60, 60, 0.9)]),  # box frame, found (elsewhere)
        image([(0, 0, 10, 10)], [det(0, 0, 10, 10, 0.2)]),  # box frame, nothing above 0.25
        image([(0, 0, 10, 10)], [det(0, 0, 10, 10, 0.5)]),  # box frame, found
        image([], [det(0, 0, 10, 10, 0.4)]),  # without a box, a false finding
        image([], []),  # without, nothing
    ]
    s = summarise_detections(results, conf_threshold=0.25)
    # with: TP 2, FN 1; without: TN 1, FP 1. Accuracy 3/5.
    # F1(with) = 2*2/(2*2+1+1) = 2/3; F1(without) = 2*1/(2*1+1+1) = 1/2.
    assert s.frame_accuracy == 0.6
    assert s.frame_macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-4)
    assert s.as_dict()["frame_macro_f1"] == s.frame_macro_f1
    s = summarise_detections(results, conf_threshold=0.45)  # the 0.4 false finding goes
    # with: TP 2, FN 1 -> F1 4/5; without: TN 2, FN 1 as its FP -> P 2/3, R 1, F1 4/5.
    assert s.frame_accuracy == 0.8
    assert s.frame_macro_f1 == pytest.approx(0.8, abs=1e-4)


def test_no_background_images_gives_no_false_alarm_rate():
    s = summarise_detections([image([(0, 0, 10, 10)], [det(0, 0, 10, 10, 0.9)])])
    assert s.n_background == 0
    assert s.fp_frames_per_100_background is None
    assert s.as_dict()["fp_frames_per_100_background"] is None


def test_perfect_predictions_score_one():
    results = [
        image(
            [(10, 10, 50, 50), (200, 20, 203, 60)],
            [det(10, 10, 50, 50, 0.9), det(200, 20, 203, 60, 0.4)],
        ),
        image([(0, 0, 100, 80)], [det(0, 0, 100, 80, 0.7)]),
        image([], []),
    ]
    s = summarise_detections(results)
    assert (s.map50, s.map50_95, s.precision, s.recall) == (1.0, 1.0, 1.0, 1.0)
    # A false positive ranked below every true positive costs nothing in AP ...
    with_fp = [*results[:2], image([], [det(0, 0, 10, 10, 0.3)])]
    s = summarise_detections(with_fp)
    assert (s.map50, s.map50_95) == (1.0, 1.0)
    assert s.precision == 3 / 4  # ... but does at the operating point
    # ... while one ranked first does.
    with_fp = [*results[:2], image([], [det(0, 0, 10, 10, 0.95)])]
    assert summarise_detections(with_fp).map50 < 1.0


def test_no_predictions_score_zero():
    results = [image([(10, 10, 50, 50)], []), image([(0, 0, 20, 20), (30, 30, 60, 60)], [])]
    s = summarise_detections(results)
    assert (s.map50, s.map50_95, s.precision, s.recall) == (0.0, 0.0, 0.0, 0.0)
    assert (s.n_images, s.n_boxes) == (2, 3)


def test_ap_is_undefined_without_ground_truth():
    results = [image([], [det(0, 0, 10, 10, 0.9)]), image([], [])]
    with pytest.raises(BadInputError, match="no ground-truth boxes"):
        summarise_detections(results)
    with pytest.raises(BadInputError, match="no ground-truth boxes"):
        average_precision(results, 0.5)


def test_pairwise_iou_agrees_with_bbox_iou():
    rng = np.random.default_rng(7)
    boxes = []
    for x0, y0, w, h in rng.uniform([0, 0, 1, 1], [100, 100, 60, 60], (12, 4)):
        boxes.append(BBox(x0, y0, x0 + w, y0 + h))
    detected, truth = boxes[:7], boxes[7:]
    iou = pairwise_iou(detected, truth)
    assert iou.shape == (7, 5)
    expected = [[d.iou(t) for t in truth] for d in detected]
    np.testing.assert_allclose(iou, expected, rtol=0, atol=1e-12)
    assert (iou > 0).any()
    assert pairwise_iou(detected, []).shape == (7, 0)


def test_module_imports_only_numpy():
    tree = ast.parse((REPO / "edge" / "eval" / "detection_metrics.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections", "dataclasses", "typing", "numpy", "edge"}


def test_box_parity_counts_matched_boxes_that_stay_close():
    from edge.eval.detection_metrics import box_parity
    from edge.types import Detections

    def frame(*boxes: tuple[float, float, float, float]) -> Detections:
        return Detections(100, 100, tuple(Detection(BBox(*b), 0.9, "polyp", 0) for b in boxes))

    reference = [frame((0, 0, 40, 40), (50, 50, 90, 90)), frame((10, 10, 30, 30))]
    other = [
        frame((1, 0, 41, 40), (56, 56, 96, 96)),  # IoU 0.95 (close); 0.57 (matched, far)
        frame((60, 60, 80, 80)),  # no overlap: not matched at all
    ]
    parity, matched = box_parity(reference, other)
    assert matched == 2
    assert parity == 0.5
    assert box_parity(reference, reference) == (1.0, 3)
