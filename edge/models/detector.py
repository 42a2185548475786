"""The polyp detector: letterbox, backend call, YOLOv5 decode and NMS in numpy.

Two output layouts, named by the model card (``detector.layout``), never guessed from
the file name:

- ``decoded``: one [1, N, 5 + nc] tensor, xywh in input pixels, objectness and class
  probabilities (yolov5's own ONNX export);
- ``raw``: one [1, H, W, anchors * (5 + nc)] tensor per stride with the sigmoid applied.
  Boxes are decoded here, in float: xy = (2 s - 0.5 + cell) * stride,
  wh = (2 s)^2 * anchor. This is what the int8 models give, so that quantisation never
  puts pixel coordinates and 0-1 scores into one int8 scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.backends import Backend, BackendOptions
from edge.backends.base import Quantization, TensorSpec
from edge.errors import ModelError
from edge.fov import FieldOfView
from edge.models.adapter import ModelAdapter, input_quantization, input_tensor, open_model
from edge.models.card import ModelCard
from edge.models.quant import dequantize
from edge.preprocess import (
    FOV_LETTERBOX_ID,
    LETTERBOX_ID,
    Image,
    Letterbox,
    check_frame,
    letterbox,
)
from edge.types import BBox, Detection, Detections

FloatArray = npt.NDArray[np.float32]

CONF_THRESHOLD = 0.25  # yolov5 detect.py's default operating point
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 300
MAX_CANDIDATES = 30000  # boxes entering NMS, best first


@dataclass(frozen=True)
class DetectorSpec:
    """The ``detector`` section of a card."""

    layout: str
    strides: tuple[int, ...]
    anchors: FloatArray  # (levels, anchors, 2) in input pixels

    @classmethod
    def from_card(cls, card: ModelCard) -> DetectorSpec:
        section: Any = card.raw.get("detector")
        where = card.path
        if not isinstance(section, dict):
            raise ModelError(f"{where}: detection card has no 'detector' section")
        layout = section.get("layout")
        if layout not in ("raw", "decoded"):
            raise ModelError(f"{where}: detector.layout {layout!r} is not 'raw' or 'decoded'")
        try:
            strides = tuple(int(s) for s in section["strides"])
            anchors = np.asarray(section["anchors"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{where}: detector needs 'strides' and 'anchors'") from None
        if anchors.ndim != 3 or anchors.shape[0] != len(strides) or anchors.shape[2] != 2:
            raise ModelError(
                f"{where}: detector.anchors must be [levels][anchors][w, h] with one level per "
                f"stride, got shape {anchors.shape}"
            )
        return cls(layout, strides, anchors)


def nms(
    boxes: FloatArray, scores: FloatArray, iou_threshold: float, limit: int = MAX_DETECTIONS
) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    areas = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        w = np.maximum(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0)
        h = np.maximum(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0)
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def decode_raw(
    heads: Sequence[FloatArray], spec: DetectorSpec, size: int, min_score: float | None = None
) -> FloatArray:
    """Raw sigmoid heads -> (N, 5 + nc) rows of xywh (input pixels), obj, classes.

    With ``min_score``, only the rows whose best class score (objectness x class) is
    above it are decoded: the rest could never pass ``select`` at that threshold, and at
    the runtime's 0.25 they are nearly all of the 4,032 rows of a 256 px frame."""
    rows = []
    by_stride = {size // h.shape[1]: h for h in heads}
    for level, stride in enumerate(spec.strides):
        head = by_stride.get(stride)
        if head is None:
            raise ModelError(f"no output of {size // stride} cells for stride {stride}")
        _, ny, nx, channels = head.shape
        na = spec.anchors.shape[1]
        p = head.reshape(ny, nx, na, channels // na)
        cell = _cells(ny, nx, na)
        anchor = np.broadcast_to(spec.anchors[level], (ny, nx, na, 2))
        if min_score is not None:
            keep = (p[..., 5:] * p[..., 4:5]).max(axis=-1) > min_score
            p, cell, anchor = p[keep], cell[keep], anchor[keep]
        xy = (p[..., 0:2] * 2 - 0.5 + cell) * stride
        wh = (p[..., 2:4] * 2) ** 2 * anchor
        rows.append(np.concatenate((xy, wh, p[..., 4:]), axis=-1).reshape(-1, p.shape[-1]))
    return np.concatenate(rows).astype(np.float32)


@lru_cache(maxsize=16)
def _cells(ny: int, nx: int, na: int) -> FloatArray:
    """(ny, nx, na, 2) grid cell offsets (x, y) of every anchor's prediction."""
    gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    cell = np.stack((gx, gy), axis=-1)[:, :, None, :].astype(np.float32)
    return np.broadcast_to(cell, (ny, nx, na, 2))


def select(
    rows: FloatArray, conf_threshold: float, iou_threshold: float
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Score, threshold and NMS decoded rows: xyxy boxes, scores, class ids."""
    class_scores = rows[:, 5:] * rows[:, 4:5]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores > conf_threshold
    rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
    if len(scores) > MAX_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
        rows, scores, class_ids = rows[top], scores[top], class_ids[top]
    xy, half = rows[:, 0:2], rows[:, 2:4] / 2
    boxes = np.concatenate((xy - half, xy + half), axis=1)
    # One NMS for all classes: shifting each class far apart keeps them from suppressing
    # each other.
    offset = class_ids[:, None].astype(np.float32) * 8192.0
    kept = nms(boxes + offset, scores, iou_threshold)
    return (
        boxes[kept].astype(np.float32),
        scores[kept].astype(np.float32),
        class_ids[kept].astype(np.intp),
    )


class Detector(ModelAdapter):
    """Finds objects in RGB uint8 frames of any size. Use :meth:`open` to build one."""

    def __init__(
        self,
        backend: Backend,
        card: ModelCard,
        conf_threshold: float = CONF_THRESHOLD,
        iou_threshold: float = IOU_THRESHOLD,
    ) -> None:
        if card.task != "detection":
            raise ModelError(f"{card.path}: task is {card.task!r}, not detection")
        if card.preprocessing_id not in (LETTERBOX_ID, FOV_LETTERBOX_ID):
            raise ModelError(
                f"{card.path}: preprocessing {card.preprocessing_id!r} is not one of the "
                f"detector's ({LETTERBOX_ID!r}, {FOV_LETTERBOX_ID!r})"
            )
        self.fov: FieldOfView | None = None
        if card.preprocessing_id == FOV_LETTERBOX_ID:
            self.fov = FieldOfView.from_card(card.raw["preprocessing"].get("fov"), card.path)
        if not 0.0 <= conf_threshold < 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ModelError(
                f"thresholds out of range: conf {conf_threshold} (0-1), iou {iou_threshold} (0-1]"
            )
        self.backend = backend
        self.card = card
        self.spec = DetectorSpec.from_card(card)
        self.labels = card.labels
        self.size = card.input_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self._input: TensorSpec = backend.inputs[0]
        self._in_quant = input_quantization(self._input, card)
        self._out_quant: list[Quantization | None] = []
        for spec in backend.outputs:
            if spec.dtype.kind in "iu" and spec.quantization is None:
                raise ModelError(
                    f"{card.path}: integer output {spec.name!r} without quantization parameters"
                )
            self._out_quant.append(spec.quantization if spec.dtype.kind in "iu" else None)
        expected = len(self.spec.strides) if self.spec.layout == "raw" else 1
        if len(backend.outputs) != expected:
            raise ModelError(
                f"{card.path}: a {self.spec.layout!r} detector has {expected} output(s), "
                f"the model has {len(backend.outputs)}"
            )

    @classmethod
    def open(
        cls,
        model: str | Path,
        backend: str = "litert",
        options: BackendOptions | None = None,
        *,
        verify: bool = True,
        warm: bool = True,  # one inference on zeros before the first frame
        conf_threshold: float = CONF_THRESHOLD,
        iou_threshold: float = IOU_THRESHOLD,
    ) -> Detector:
        card, runner = open_model(model, backend, options, verify, warm)
        return cls(runner, card, conf_threshold, iou_threshold)

    def preprocess(self, frame: Image) -> tuple[Image, Letterbox]:
        if self.fov is not None:
            check_frame(frame)
            frame = self.fov.apply(frame)
        return letterbox(frame, self.size)

    def to_input(self, prepared: Image) -> np.ndarray:
        """The backend's input tensor for one letterboxed frame."""
        return input_tensor(prepared[None], self._input, self._in_quant)

    def rows(self, prepared: Image, min_score: float | None = None) -> FloatArray:
        """Decoded (N, 5 + nc) candidate rows for one letterboxed frame; with
        ``min_score``, only those that can pass ``select`` at that threshold."""
        outputs = self.backend.run([self.to_input(prepared)])
        floats = [
            dequantize(o, q) if q is not None else o.astype(np.float32)
            for o, q in zip(outputs, self._out_quant, strict=True)
        ]
        if self.spec.layout == "raw":
            return decode_raw(floats, self.spec, self.size, min_score)
        return floats[0].reshape(-1, floats[0].shape[-1])

    def detect(self, frame: Image) -> Detections:
        prepared, placed = self.preprocess(frame)
        boxes, scores, class_ids = select(
            self.rows(prepared, self.conf_threshold), self.conf_threshold, self.iou_threshold
        )
        height, width = frame.shape[:2]
        items = []
        for (x0, y0, x1, y1), score, cid in zip(boxes, scores, class_ids, strict=True):
            box = BBox(
                float((x0 - placed.pad_x) / placed.ratio),
                float((y0 - placed.pad_y) / placed.ratio),
                float((x1 - placed.pad_x) / placed.ratio),
                float((y1 - placed.pad_y) / placed.ratio),
            ).clip(width, height)
            label = self.labels[cid] if cid < len(self.labels) else str(int(cid))
            items.append(Detection(box, float(score), label, int(cid)))
        return Detections(width, height, tuple(items))
