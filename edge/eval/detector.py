"""Run a detector over labelled frames: the core of ``eval detect`` and of conversion.

Frames come from a Kvasir-SEG (or YOLO-format) folder; any image there without a box is
a frame without findings, and one whose every box was unusable is set aside and counted
(see ``edge.eval.detection_data``). Optionally, polyp-free frames also come from a
HyperKvasir class tree (every class but ``polyps``). A split file restricts both to its
validation side. Its keys are either the classifier's (``.../polyps/<file>``: the same
frames as Kvasir-SEG) or the data folder's own (``images/<file>``: a detector's split).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import BadInputError
from edge.eval.dataset import read_split, scan
from edge.eval.detection_data import (
    DetectionDataset,
    load_kvasir_seg,
    load_yolo,
    yolo_names,
)
from edge.eval.detection_metrics import DetectionSummary, ImageResult, summarise_detections
from edge.frames import read_image
from edge.models.detector import Detector
from edge.preprocess import Image
from edge.types import BBox, Detections, Skipped

POLYP_CLASS = "polyps"
# The folder a split key's file lies in, for the frames of the detection folder.
SPLIT_FOLDERS = (POLYP_CLASS, "images")
EVAL_CONF = 0.001  # mAP needs the whole precision-recall curve, as yolov5's val.py


@dataclass(frozen=True)
class LabelledFrame:
    path: Path
    truth: tuple[BBox, ...]  # empty: a polyp-free frame


@dataclass
class DetectionEval:
    summary: DetectionSummary
    frames: list[LabelledFrame]
    detections: list[Detections]
    skipped: list[Skipped] = field(default_factory=list)
    set_aside: list[Skipped] = field(default_factory=list)  # polyp images with no usable box


@dataclass
class LabelledSet:
    frames: list[LabelledFrame]
    skipped: list[Skipped]
    set_aside: list[Skipped]


def load_detection_folder(root: Path) -> DetectionDataset:
    """A Kvasir-SEG folder (``kavsir_bboxes.json``) or a YOLO/LabelImg one."""
    if (root / "kavsir_bboxes.json").is_file():
        return load_kvasir_seg(root)
    if (root / "labels").is_dir():
        # A LabelImg folder without data.yaml: the polyp detector's own layout.
        return load_yolo(root, yolo_names(root, ["polyp"]))
    raise BadInputError(f"{root}: neither a Kvasir-SEG folder nor images/ + labels/ (YOLO)")


def split_stems(keys: set[str]) -> set[str]:
    """The file stems of a split's keys that name frames of the detection folder."""
    return {Path(k).stem for k in keys if Path(k).parent.name in SPLIT_FOLDERS}


def labelled_frames(
    data: Path, split: Path | None = None, background: Path | None = None, side: str = "val"
) -> tuple[list[LabelledFrame], list[Skipped]]:
    """The frames to evaluate (or calibrate on, with ``side="train"``); the images set
    aside are among the skipped."""
    chosen = labelled_set(data, split, background, side)
    return chosen.frames, chosen.skipped + chosen.set_aside


def labelled_set(
    data: Path, split: Path | None = None, background: Path | None = None, side: str = "val"
) -> LabelledSet:
    """The frames to evaluate, what was skipped, and the polyp images set aside."""
    dataset = load_detection_folder(data)
    skipped = list(dataset.skipped)
    keys: set[str] | None = None
    if split is not None:
        train, val = read_split(split)
        keys = val if side == "val" else train
    polyp_stems = split_stems(keys) if keys is not None else None
    frames = [
        LabelledFrame(s.path, s.boxes)
        for s in dataset.samples
        if polyp_stems is None or s.path.stem in polyp_stems
    ]
    if polyp_stems is not None and not frames:
        raise BadInputError(f"{split}: none of its polyp frames are in {data}")
    if background is not None:
        tree = scan(background)
        skipped.extend(tree.skipped)
        for sample in tree.samples:
            if sample.label == POLYP_CLASS:
                continue
            if keys is None or sample.key(tree.root) in keys:
                frames.append(LabelledFrame(sample.path, ()))
    set_aside = [
        s for s in dataset.set_aside if polyp_stems is None or Path(s.source).stem in polyp_stems
    ]
    return LabelledSet(frames, skipped, set_aside)


def iter_images(
    frames: list[LabelledFrame], skipped: list[Skipped]
) -> Iterator[tuple[LabelledFrame, Image]]:
    for frame in frames:
        try:
            yield frame, read_image(frame.path)
        except BadInputError as exc:
            skipped.append(Skipped.from_error(frame.path, exc))


def evaluate_detector(
    detector: Detector,
    data: Path,
    split: Path | None = None,
    background: Path | None = None,
    conf_threshold: float = 0.25,
    transform: Callable[[Image], Image] | None = None,
) -> DetectionEval:
    """mAP over every candidate above ``EVAL_CONF``; precision, recall and false-alarm
    frames at ``conf_threshold`` (the runtime's operating point). ``transform`` changes
    each frame before the detector sees it (a robustness check)."""
    chosen = labelled_set(data, split, background)
    frames, skipped = chosen.frames, chosen.skipped
    saved = detector.conf_threshold
    detector.conf_threshold = min(EVAL_CONF, conf_threshold)
    used: list[LabelledFrame] = []
    found: list[Detections] = []
    try:
        for frame, image in iter_images(frames, skipped):
            used.append(frame)
            found.append(detector.detect(transform(image) if transform else image))
    finally:
        detector.conf_threshold = saved
    results = [ImageResult(f.truth, d.items) for f, d in zip(used, found, strict=True)]
    summary = summarise_detections(results, conf_threshold=conf_threshold)
    return DetectionEval(summary, used, found, skipped, chosen.set_aside)
