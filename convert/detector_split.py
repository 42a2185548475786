"""The train/validation split of a detector's own data (a YOLO folder such as WCEBleedGen).

Keys are paths relative to the data folder (``images/<file>``), the same form the
classifier's ``split.json`` uses for its tree, so ``eval detect --split`` reads both.
Near-duplicates stay on one side: WCEBleedGen's frames come from short capsule video
runs (763 of its 2,022 frames have a twin correlating above 0.99), so frames are grouped
at ``GROUP_THRESHOLD``, stricter than that, and whole groups assigned, stratified by
"has a box" (``convert.split``). Thumbnails are taken inside the field of view, where
every frame shows mucosa.

Frames of one video are also numbered in order (``img-117-...``, ``img-118-...``):
numerically adjacent frames correlate at a median 0.65 (random pairs: 0.00) without
being twins, so frames whose names differ only by consecutive numbers are one run, and
a run is one group too. (The first bleeding detector was split by thumbnails alone: 247
of its 405 validation frames have a training frame one number away.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from convert.split import merge_groups, near_duplicate_groups, split_groups
from edge.eval.detection_data import DetectionDataset
from edge.frames import read_image

# With the video runs: 262 groups of up to 68 frames (at 0.90 the thumbnails chain runs
# into groups of 433 and 510 frames, and the folds cannot be balanced).
GROUP_THRESHOLD = 0.95
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
    keys = [s.path.relative_to(data.root).as_posix() for s in data.samples]
    groups = merge_groups(
        near_duplicate_groups(images, has_box, GROUP_THRESHOLD),
        sequence_runs([s.path.name for s in data.samples]),
    )
    train, val = split_groups(has_box, groups, val_fraction, seed)
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


NUMBERED = re.compile(r"^(\D*?)(\d+)(\D.*)?$")


def sequence_runs(names: list[str]) -> np.ndarray:
    """A run id per name: names alike but for a number, numbers consecutive, share one
    (``img-117-_png.rf.x.jpg`` and ``img-118-_png.rf.y.jpg``; the suffix after the number
    up to its first ``.`` tells two series apart). Unnumbered names are runs of one."""
    series: dict[tuple[str, str], list[tuple[int, int]]] = {}
    runs = np.arange(len(names))
    for i, name in enumerate(names):
        match = NUMBERED.match(name)
        if match:
            tail = (match.group(3) or "").split(".")[0]
            series.setdefault((match.group(1), tail), []).append((int(match.group(2)), i))
    for members in series.values():
        members.sort()
        for (a, ia), (b, ib) in itertools.pairwise(members):
            if b - a <= 1:
                runs[ib] = runs[ia]
    return runs


def write_split(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path
