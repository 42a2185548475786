"""Labelled detection data: the official Kvasir-SEG layout and YOLO-format label files.

Kvasir-SEG: ``images/<id>.jpg`` and ``kavsir_bboxes.json`` ({id: {"height", "width",
"bbox": [{"label", "xmin", "ymin", "xmax", "ymax"}]}}). YOLO (as LabelImg writes it):
``images/<name>.<ext>`` beside ``labels/<name>.txt`` with ``class cx cy w h`` in fractions
of the image. Boxes are clipped to the image; a box with no area left (or a label line
that cannot be read) is dropped and counted, never a crash. An image without boxes is a
polyp-free (background) frame, but one whose every box was dropped is not: somebody
marked a polyp there, so it is *set aside* (``DetectionDataset.set_aside``), neither a
polyp frame, which has no box left to match, nor a polyp-free one, where a detection of
that polyp would count as a false alarm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.errors import BadInputError
from edge.frames import image_size, is_image_file
from edge.types import BBox, Skipped

KVASIR_SEG_BOXES = "kavsir_bboxes.json"


@dataclass(frozen=True)
class DetectionSample:
    path: Path
    boxes: tuple[BBox, ...]
    labels: tuple[str, ...]


@dataclass
class DetectionDataset:
    root: Path
    samples: list[DetectionSample]
    skipped: list[Skipped] = field(default_factory=list)  # unusable files and boxes
    set_aside: list[Skipped] = field(default_factory=list)  # images whose every box went

    @property
    def n_boxes(self) -> int:
        return sum(len(s.boxes) for s in self.samples)


def _box(raw: dict[str, Any], width: float, height: float, where: str) -> BBox:
    try:
        box = BBox(float(raw["xmin"]), float(raw["ymin"]), float(raw["xmax"]), float(raw["ymax"]))
    except (KeyError, TypeError, ValueError):
        raise BadInputError(f"{where}: box is not {{xmin, ymin, xmax, ymax}}: {raw}") from None
    return box.clip(width, height)


def _set_aside(path: Path, dropped: int, where: str) -> Skipped:
    return Skipped(
        str(path),
        f"set aside: its {dropped} box(es) in {where} have no area or cannot be read, "
        "so it is neither a polyp frame nor polyp-free",
    )


def load_kvasir_seg(root: str | Path) -> DetectionDataset:
    """Read a Kvasir-SEG folder. Images without an entry in the JSON are skipped and named."""
    root = Path(root)
    boxes_file = root / KVASIR_SEG_BOXES
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise BadInputError(f"{root}: no images/ folder (not a Kvasir-SEG layout)")
    if not boxes_file.is_file():
        raise BadInputError(f"{root}: no {KVASIR_SEG_BOXES}")
    try:
        entries = json.loads(boxes_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{boxes_file}: unreadable ({exc})") from None
    if not isinstance(entries, dict):
        raise BadInputError(f"{boxes_file}: expected an object keyed by image id")
    samples: list[DetectionSample] = []
    skipped: list[Skipped] = []
    set_aside: list[Skipped] = []
    for path in sorted(p for p in images_dir.iterdir() if p.is_file()):
        if not is_image_file(path):
            skipped.append(Skipped(str(path), "not an image file (by its name)"))
            continue
        entry = entries.get(path.stem)
        if not isinstance(entry, dict):
            skipped.append(Skipped(str(path), f"no entry in {KVASIR_SEG_BOXES}"))
            continue
        where = f"{boxes_file} [{path.stem}]"
        width, height = float(entry.get("width", 1e9)), float(entry.get("height", 1e9))
        boxes, labels = [], []
        entry_boxes = entry.get("bbox", [])
        if not isinstance(entry_boxes, list):
            raise BadInputError(f"{where}: bbox must be a list of boxes")
        for raw in entry_boxes:
            box = _box(raw, width, height, where)
            if box.area <= 0:
                skipped.append(Skipped(where, f"box with no area dropped: {raw}"))
                continue
            boxes.append(box)
            labels.append(str(raw.get("label", "polyp")))
        if entry_boxes and not boxes:
            set_aside.append(_set_aside(path, len(entry_boxes), KVASIR_SEG_BOXES))
            continue
        samples.append(DetectionSample(path, tuple(boxes), tuple(labels)))
    if not samples:
        raise BadInputError(f"{root}: no labelled images")
    return DetectionDataset(root, samples, skipped, set_aside)


def yolo_names(root: str | Path, default: list[str]) -> list[str]:
    """The class names of a YOLO folder from its ``data.yaml`` (a list, or a map from
    class id to name), else ``default``."""
    path = Path(root) / "data.yaml"
    if not path.is_file():
        return default
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path}: unreadable ({type(exc).__name__})") from None
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        try:
            names = [names[i] for i in range(len(names))]
        except KeyError:
            names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadInputError(f"{path}: names must be a list of class names (or 0..n-1 -> name)")
    return names


def load_yolo(root: str | Path, names: list[str]) -> DetectionDataset:
    """Read ``images/`` with ``labels/*.txt`` in YOLO format, boxes back in pixels. An
    image without a label file, or with an empty one, is a background frame."""
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise BadInputError(f"{root}: no images/ folder (not a YOLO layout)")
    samples: list[DetectionSample] = []
    skipped: list[Skipped] = []
    set_aside: list[Skipped] = []
    for path in sorted(p for p in images_dir.iterdir() if p.is_file() and is_image_file(p)):
        try:
            width, height = image_size(path)
        except BadInputError as exc:
            skipped.append(Skipped.from_error(path, exc))
            continue
        label_file = labels_dir / (path.stem + ".txt")
        boxes, labels = [], []
        lines = label_file.read_text(encoding="utf-8").splitlines() if label_file.is_file() else []
        dropped = 0
        for number, line in enumerate(lines, 1):
            where = f"{label_file}:{number}"
            parts = line.split()
            if not parts:
                continue
            try:
                cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
            except (ValueError, TypeError):
                skipped.append(Skipped(where, f"not 'class cx cy w h': {line!r}"))
                dropped += 1
                continue
            if len(parts) != 5 or not 0 <= cls < len(names):
                skipped.append(
                    Skipped(where, f"not 'class cx cy w h' with a known class: {line!r}")
                )
                dropped += 1
                continue
            box = BBox(
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            ).clip(width, height)
            if box.area <= 0:
                skipped.append(Skipped(where, f"box with no area dropped: {line!r}"))
                dropped += 1
                continue
            boxes.append(box)
            labels.append(names[cls])
        if dropped and not boxes:
            set_aside.append(_set_aside(path, dropped, str(label_file)))
            continue
        samples.append(DetectionSample(path, tuple(boxes), tuple(labels)))
    if not samples:
        raise BadInputError(f"{root}: no images")
    return DetectionDataset(root, samples, skipped, set_aside)
