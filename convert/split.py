"""Deterministic, stratified train/validation split that keeps near-duplicates together.

Consecutive frames of one video look almost the same; if one lands in training and its
twin in validation, the validation figure flatters the model. Frames are grouped by the
correlation of small grey thumbnails (union-find over every pair within a class above
``threshold``), and whole groups are assigned to one side by scikit-learn's
``StratifiedGroupKFold``.
"""

from __future__ import annotations

import cv2
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

THUMB = 16
# Where every preprocessed frame shows mucosa: clear of the blacked-out inset (lower
# left), scope icon (right) and octagon corners, which are alike in every frame and
# would make every pair look alike.
VISIBLE = (0.25, 0.20, 0.80, 0.80)  # x0, y0, x1, y1 as fractions of the side


def _thumbnails(images: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm grey thumbnails of the visible centre, one row per frame."""
    size = images.shape[1]
    x0, y0, x1, y1 = (round(f * size) for f in VISIBLE)
    flat = np.stack(
        [
            cv2.resize(
                image[y0:y1, x0:x1].mean(axis=2, dtype=np.float32),
                (THUMB, THUMB),
                interpolation=cv2.INTER_AREA,
            ).ravel()
            for image in images
        ]
    )
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6
    return np.asarray(flat, dtype=np.float32)


class _Groups:
    """Union-find over frame indices; a group's id is its smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def ids(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))])


def near_duplicate_groups(images: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """A group id per frame; frames of one class correlating above ``threshold`` share one."""
    groups = _Groups(len(images))
    thumbs = _thumbnails(images)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        sim = thumbs[members] @ thumbs[members].T
        for a, b in zip(*np.nonzero(np.triu(sim > threshold, k=1)), strict=True):
            groups.join(int(members[a]), int(members[b]))
    return groups.ids()


def split(
    images: np.ndarray,
    labels: np.ndarray,
    val_fraction: float = 0.2,
    seed: int = 0,
    threshold: float = 0.90,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train indices, validation indices and the group of every frame."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    groups = near_duplicate_groups(images, labels, threshold)
    train, val = split_groups(labels, groups, val_fraction, seed, nearest=False)
    return train, val, groups


def split_groups(
    labels: np.ndarray,
    groups: np.ndarray,
    val_fraction: float = 0.2,
    seed: int = 0,
    nearest: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices, whole groups to one side, stratified by label: of
    the folds, the one whose size is nearest ``val_fraction`` (with large groups, such
    as a capsule's video runs, the folds differ in size), or with ``nearest=False`` the
    first, as the bundled classifier's split was made."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    folds = max(2, round(1 / val_fraction))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    candidates = splitter.split(np.zeros(len(labels)), labels, groups)
    if nearest:
        target = val_fraction * len(labels)
        train, val = min(candidates, key=lambda fold: abs(len(fold[1]) - target))
    else:
        train, val = next(candidates)
    return np.sort(train), np.sort(val)


def merge_groups(*groupings: np.ndarray) -> np.ndarray:
    """One group id per frame such that frames sharing a group in any grouping share one."""
    groups = _Groups(len(groupings[0]))
    for grouping in groupings:
        first: dict[int, int] = {}
        for i, g in enumerate(grouping.tolist()):
            groups.join(first.setdefault(g, i), i)
    return groups.ids()
