"""A class-folder dataset decoded and preprocessed into memory, with counted skips."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import BadInputError
from edge.eval.dataset import ClassFolderDataset, scan
from edge.preprocess import prepare
from edge.types import Skipped

log = logging.getLogger(__name__)


@dataclass
class PreparedFrames:
    """Preprocessed frames (n, size, size, 3) uint8, integer labels and sample keys."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    classes: list[str]
    skipped: list[Skipped] = field(default_factory=list)

    def subset(self, index: np.ndarray) -> PreparedFrames:
        return PreparedFrames(
            self.images[index], self.labels[index], [self.keys[i] for i in index], self.classes
        )


def load_prepared(
    root: str | Path, size: int, classes: list[str] | None = None, progress: bool = False
) -> PreparedFrames:
    """Decode and preprocess every frame; raise for a dataset that cannot be trained on."""
    dataset: ClassFolderDataset = scan(root)
    if classes:
        dataset = dataset.select(classes)
    empty = dataset.empty_classes()
    if empty:
        raise BadInputError(
            f"{dataset.root}: class folder(s) without images: "
            + ", ".join(f"{c} ({dataset.class_dirs[c]})" for c in empty)
        )
    labels = dataset.labels
    if len(labels) < 2:
        raise BadInputError(f"{dataset.root}: need at least 2 classes, found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    images, targets, keys = [], [], []
    skipped = list(dataset.skipped)
    items = dataset.load()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(dataset.samples), desc="frames", unit="frame")
    for item in items:
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        sample, image = item
        images.append(prepare(image, size))
        targets.append(index[sample.label])
        keys.append(sample.key(dataset.root))
    for s in skipped:
        log.warning("skipped %s", s)
    if not images:
        raise BadInputError(f"{dataset.root}: no readable frames")
    present = set(targets)
    missing = [c for c in labels if index[c] not in present]
    if missing:
        raise BadInputError(
            f"{dataset.root}: no readable frames in class folder(s): {', '.join(missing)}"
        )
    return PreparedFrames(np.stack(images), np.asarray(targets), keys, labels, skipped)
