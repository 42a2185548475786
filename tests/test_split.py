import numpy as np
import pytest

pytest.importorskip("sklearn")

from convert.split import near_duplicate_groups, split


def _frames(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_near_duplicates_share_a_group_and_a_side():
    rng = np.random.default_rng(0)
    frames = _frames(60, rng)
    labels = np.repeat([0, 1, 2], 20)
    # frames 1-4 are noisy copies of frame 0: one video
    for i in range(1, 5):
        noise = rng.integers(-6, 7, frames[0].shape)
        frames[i] = np.clip(frames[0].astype(int) + noise, 0, 255)
    groups = near_duplicate_groups(frames, labels, 0.9)
    assert len(set(groups[:5])) == 1
    assert len(set(groups)) == 56
    for seed in range(5):
        _, val, _ = split(frames, labels, 0.2, seed)
        sides = {int(i in set(val.tolist())) for i in range(5)}
        assert len(sides) == 1


def test_split_is_deterministic_stratified_and_disjoint():
    rng = np.random.default_rng(1)
    frames = _frames(100, rng)
    labels = np.repeat([0, 1], [80, 20])
    train, val, _ = split(frames, labels, 0.2, seed=3)
    again_train, again_val, _ = split(frames, labels, 0.2, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not set(train) & set(val) and len(train) + len(val) == 100
    assert np.bincount(labels[val]).tolist() == [16, 4]


def test_val_fraction_is_checked():
    with pytest.raises(ValueError, match="val_fraction"):
        split(np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 0, 1, 1]), 0.9)
