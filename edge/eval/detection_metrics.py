"""Detection metrics in plain numpy, so that the device can evaluate its own detector.

Box AP follows pycocotools' ``COCOeval`` for ``iouType="bbox"``, area range "all" and
``maxDets=100``, step by step (see :func:`average_precision`), so ``map50`` and ``map50_95``
are the numbers COCO tooling would report for the same boxes and scores.

The metrics are single class and class-agnostic: every ground-truth box and every
detection of an :class:`ImageResult` is taken to be of the one class evaluated (polyp).
Filter detections by ``class_id`` before building the results to evaluate one class of a
multi-class detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from edge.errors import BadInputError
from edge.eval.metrics import confusion_matrix, summarise
from edge.types import BBox, Detection, Detections

MAX_DETECTIONS = 100
"""Detections kept per image for AP, the highest-scoring first (COCO's maxDets=100)."""

IOU_THRESHOLDS: npt.NDArray[np.float64] = np.linspace(0.5, 0.95, 10)
"""COCO's IoU thresholds 0.50:0.05:0.95, built as COCOeval builds them (0.9 is 0.8999...)."""

RECALL_POINTS: npt.NDArray[np.float64] = np.linspace(0.0, 1.0, 101)
"""The 101 recall points at which COCO samples the precision envelope."""


@dataclass(frozen=True)
class ImageResult:
    """One evaluated image: its ground-truth boxes and every detection, with scores.

    Pass all detections (a low threshold such as 0.001): AP integrates over scores, and
    the operating point is applied by :func:`summarise_detections`.
    """

    truth: tuple[BBox, ...]
    predicted: tuple[Detection, ...]


@dataclass(frozen=True)
class DetectionSummary:
    """Box AP over the whole set, and precision and recall at one confidence threshold."""

    map50: float  # COCO AP at IoU 0.50
    map50_95: float  # COCO AP averaged over IoU 0.50:0.05:0.95
    precision: float  # at conf_threshold; 0.0 when no detection reaches it
    recall: float  # at conf_threshold
    n_images: int  # images with at least one ground-truth box
    n_boxes: int  # ground-truth boxes
    n_background: int  # images without a ground-truth box
    # background images with a detection >= conf_threshold, per 100 background images
    fp_frames_per_100_background: float | None
    conf_threshold: float
    # The frame-level decision "has a finding" (a box at conf_threshold) against "has a
    # ground-truth box": accuracy, and macro-F1 over the two classes present.
    frame_accuracy: float = 0.0
    frame_macro_f1: float = 0.0

    def as_dict(self) -> dict[str, float | int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def pairwise_iou(detected: Sequence[BBox], truth: Sequence[BBox]) -> npt.NDArray[np.float64]:
    """IoU of every detected box (rows) with every ground-truth box (columns).

    Computed as pycocotools does for boxes: in ``[x, y, w, h]`` form, the far edge at
    ``x + w``, areas ``w * h`` in pixels (no +1), and 0 where the boxes do not overlap.
    """
    d = _xywh(detected)
    g = _xywh(truth)
    width = np.minimum((d[:, 0] + d[:, 2])[:, None], (g[:, 0] + g[:, 2])[None, :]) - np.maximum(
        d[:, 0][:, None], g[:, 0][None, :]
    )
    height = np.minimum((d[:, 1] + d[:, 3])[:, None], (g[:, 1] + g[:, 3])[None, :]) - np.maximum(
        d[:, 1][:, None], g[:, 1][None, :]
    )
    overlap = (width > 0) & (height > 0)
    inter = np.where(overlap, width * height, 0.0)
    union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None, :] - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=overlap)
    return iou


def average_precision(results: Sequence[ImageResult], iou_threshold: float) -> float:
    """COCO box AP at one IoU threshold, as ``COCOeval`` computes it.

    Per image the 100 highest-scoring detections are kept (stable sort on score). Within
    its image, each detection in score order takes the not yet matched ground-truth box
    with the highest IoU >= ``iou_threshold`` (on equal IoU, the later box, as COCOeval's
    loop does); unmatched detections, including every detection on an image without
    ground truth, are false positives. Detections of all images are then ranked by score
    (stable mergesort, images in the order given), the precision is made non-increasing
    from the right and sampled at the 101 recall points 0.00:0.01:1.00 (0 beyond the
    largest recall reached), and AP is the mean of those samples.

    Raises ValueError when there is no ground-truth box, where AP is undefined (COCOeval
    reports -1).
    """
    thresholds = np.array([iou_threshold], dtype=np.float64)
    return float(_precision_samples(_match_all(results, thresholds), thresholds)[0].mean())


def summarise_detections(
    results: Sequence[ImageResult], conf_threshold: float = 0.25
) -> DetectionSummary:
    """COCO mAP@0.5 and mAP@0.5:0.95, and precision, recall and background false alarms.

    At the operating point, the detections scoring >= ``conf_threshold`` are matched at IoU
    0.5 exactly as for AP, but without the 100-per-image cap; precision is TP / (TP + FP)
    over all images, background ones included, and recall is TP over the ground-truth boxes.

    Raises ValueError when there is no ground-truth box (AP and recall are undefined).
    """
    images = _match_all(results, IOU_THRESHOLDS, conf_threshold)
    samples = _precision_samples(images, IOU_THRESHOLDS)
    n_boxes = sum(image.n_truth for image in images)
    above = [int(np.count_nonzero(image.scores >= conf_threshold)) for image in images]
    # Row 0 of `matched` is IoU 0.5 (IOU_THRESHOLDS[0] == 0.5). Matching is
    # greedy in score order, so the detections over the threshold match as they would alone.
    tp = sum(
        int(np.count_nonzero(image.matched[0, :n])) for image, n in zip(images, above, strict=True)
    )
    n_detected = sum(above)
    background = [n for image, n in zip(images, above, strict=True) if image.n_truth == 0]
    fp_frames = sum(1 for n in background if n > 0)
    decided = summarise(
        confusion_matrix(
            [int(image.n_truth > 0) for image in images], [int(n > 0) for n in above], 2
        ),
        ("without", "with"),
    )
    return DetectionSummary(
        map50=float(samples[0].mean()),
        map50_95=float(samples.mean()),
        precision=tp / n_detected if n_detected else 0.0,
        recall=tp / n_boxes,
        n_images=len(images) - len(background),
        n_boxes=n_boxes,
        n_background=len(background),
        fp_frames_per_100_background=100.0 * fp_frames / len(background) if background else None,
        conf_threshold=conf_threshold,
        frame_accuracy=decided["accuracy"],
        frame_macro_f1=decided["macro_f1"],
    )


@dataclass(frozen=True)
class _Matched:
    """One image's detections, best first, and whether each matched at each threshold."""

    scores: npt.NDArray[np.float64]  # (D,), non-increasing
    matched: npt.NDArray[np.bool_]  # (T, D)
    n_truth: int


def _xywh(boxes: Sequence[BBox]) -> npt.NDArray[np.float64]:
    return np.array([(b.x0, b.y0, b.width, b.height) for b in boxes], dtype=np.float64).reshape(
        -1, 4
    )


def _match_all(
    results: Sequence[ImageResult],
    thresholds: npt.NDArray[np.float64],
    conf_threshold: float | None = None,
) -> list[_Matched]:
    """Sort and match each image's detections; keep the top 100 and all >= conf_threshold."""
    images = []
    for result in results:
        scores = np.array([d.score for d in result.predicted], dtype=np.float64)
        if not np.all(np.isfinite(scores)):
            raise ValueError("detection scores must be finite")
        order = np.argsort(-scores, kind="mergesort")
        keep = min(len(order), MAX_DETECTIONS)
        if conf_threshold is not None:
            keep = max(keep, int(np.count_nonzero(scores >= conf_threshold)))
        order = order[:keep]
        ious = pairwise_iou([result.predicted[i].box for i in order], result.truth)
        images.append(_Matched(scores[order], _match(ious, thresholds), len(result.truth)))
    if not any(image.n_truth for image in images):
        raise BadInputError("no ground-truth boxes: AP and recall are undefined")
    return images


def _match(
    ious: npt.NDArray[np.float64], thresholds: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Greedy matching of COCOeval.evaluateImg, for all thresholds at once.

    Row d of ``ious`` is the d-th best detection. Returns (T, D): whether detection d took
    a ground-truth box at threshold t.
    """
    n_det, n_truth = ious.shape
    matched = np.zeros((len(thresholds), n_det), dtype=bool)
    if n_truth == 0:
        return matched
    taken = np.zeros((len(thresholds), n_truth), dtype=bool)
    limits = np.minimum(thresholds, 1 - 1e-10)[:, None]  # COCOeval's cap
    rows = np.arange(len(thresholds))
    for d in range(n_det):
        free = ~taken & (ious[d][None, :] >= limits)
        hit = free.any(axis=1)
        if not hit.any():
            continue
        # the best free box; on equal IoU the last one, as COCOeval's `<` comparison gives
        reversed_ious = np.where(free, ious[d][None, :], -1.0)[:, ::-1]
        best = n_truth - 1 - np.argmax(reversed_ious, axis=1)
        taken[rows[hit], best[hit]] = True
        matched[:, d] = hit
    return matched


def _precision_samples(
    images: Sequence[_Matched], thresholds: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """COCOeval.accumulate: (T, 101) interpolated precision at the recall points."""
    n_truth = sum(image.n_truth for image in images)
    scores = np.concatenate([image.scores[:MAX_DETECTIONS] for image in images])
    matched = np.concatenate([image.matched[:, :MAX_DETECTIONS] for image in images], axis=1)
    order = np.argsort(-scores, kind="mergesort")
    matched = matched[:, order]
    tp = np.cumsum(matched, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched, axis=1, dtype=np.float64)
    recall = tp / n_truth
    # COCOeval adds np.spacing(1) to the denominator; tp + fp is the rank (>= 1) here, so
    # leaving it out changes nothing beyond the last bit and keeps perfect precision at 1.0.
    precision = np.zeros_like(tp)
    np.divide(tp, tp + fp, out=precision, where=(tp + fp) > 0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    samples = np.zeros((len(thresholds), len(RECALL_POINTS)))
    for t in range(len(thresholds)):
        at = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        inside = at < recall.shape[1]
        samples[t, inside] = precision[t, at[inside]]
    return samples


PARITY_IOU = 0.9


def box_parity(reference: Sequence[Detections], other: Sequence[Detections]) -> tuple[float, int]:
    """Share of ``other``'s boxes, matched to ``reference``'s on the same frame at
    IoU >= 0.5 (best first, one to one), that overlap their match at IoU >= 0.9."""
    matched = close = 0
    for ref, got in zip(reference, other, strict=True):
        free = list(ref.items)
        for det in got.items:
            if not free:
                break
            ious = [det.box.iou(r.box) for r in free]
            best = int(np.argmax(ious))
            if ious[best] >= 0.5:
                matched += 1
                close += ious[best] >= PARITY_IOU
                free.pop(best)
    return (close / matched if matched else 1.0), matched
