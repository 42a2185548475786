"""The train/validation split of a detector's own data (a YOLO folder such as WCEBleedGen).

Keys are paths relative to the data folder (``images/<file>``), the same form the
classifier's ``split.json`` uses for its tree, so ``eval detect --split`` reads both.
Near-duplicates stay on one side: WCEBleedGen's frames come from short capsule video
runs (763 of its 2,022 frames have a twin correlating above 0.99), so frames are grouped
at ``GROUP_THRESHOLD``, stricter than that, and whole groups assigned, stratified by
"has a box" (``convert.split``). Thumbnails are taken inside the field of view, where
every frame shows mucosa.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from convert.split import split
from edge.eval.detection_data import DetectionDataset
from edge.frames import read_image

GROUP_THRESHOLD = 0.90  # 0.99: 621 frames in groups of 2-19; 0.90: 1,072, in up to 89
THUMB_SIDE = 64


def split_detection_folder(
    data: DetectionDataset, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """The split document (``split.json``) of a detection folder."""
    images = np.stack(
        [
            cv2.resize(read_image(s.path), (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
            for s in data.samples
        ]
    )
    has_box = np.array([bool(s.boxes) for s in data.samples], dtype=np.int64)
    train, val, groups = split(images, has_box, val_fraction, seed, GROUP_THRESHOLD)
    keys = [s.path.relative_to(data.root).as_posix() for s in data.samples]
    fingerprint = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "data_fingerprint": fingerprint,
        "group_threshold": GROUP_THRESHOLD,
        "groups": len(np.unique(groups)),
        "train": [keys[i] for i in train],
        "validation": [keys[i] for i in val],
        "validation_with_boxes": int(has_box[val].sum()),
    }


def write_split(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path
