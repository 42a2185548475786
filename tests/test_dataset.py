from pathlib import Path

import numpy as np
import pytest

from edge.errors import BadInputError
from edge.eval.dataset import scan
from tests.conftest import synthetic_frame, write_rgb


def _tree(root: Path, layout: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for rel, count in layout.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_rgb(root / rel / f"{i}.jpg", synthetic_frame("mucosa", rng, 40, 32))


def test_hyperkvasir_layout_takes_classes_from_leaf_folders(tmp_path: Path):
    _tree(
        tmp_path,
        {
            "lower-gi-tract/anatomical-landmarks/cecum": 3,
            "lower-gi-tract/pathological-findings/polyps": 2,
            "upper-gi-tract/anatomical-landmarks/z-line": 1,
        },
    )
    ds = scan(tmp_path)
    assert ds.labels == ["cecum", "polyps", "z-line"]
    assert ds.counts() == {"cecum": 3, "polyps": 2, "z-line": 1}


def test_flat_kvasir_layout(tmp_path: Path):
    _tree(tmp_path, {"esophagitis": 2, "normal-pylorus": 2, "ulcerative-colitis": 1})
    assert scan(tmp_path).labels == ["esophagitis", "normal-pylorus", "ulcerative-colitis"]


def test_select_a_subset_of_classes(tmp_path: Path):
    _tree(tmp_path, {"a": 1, "b": 1, "c": 1})
    assert scan(tmp_path).select(["a", "c"]).labels == ["a", "c"]
    with pytest.raises(BadInputError, match="no class folder named zz"):
        scan(tmp_path).select(["zz"])


def test_missing_root(tmp_path: Path):
    with pytest.raises(BadInputError, match="no such folder"):
        scan(tmp_path / "nope")


def test_empty_root(tmp_path: Path):
    with pytest.raises(BadInputError, match="no class folders with images"):
        scan(tmp_path)


def test_empty_class_is_kept_so_it_can_be_named(tmp_path: Path):
    _tree(tmp_path, {"a": 2, "b": 0})
    ds = scan(tmp_path)
    assert ds.empty_classes() == ["b"]


def test_class_name_twice_is_an_error(tmp_path: Path):
    _tree(tmp_path, {"x/polyps": 1, "y/polyps": 1})
    with pytest.raises(BadInputError, match="class 'polyps' appears twice"):
        scan(tmp_path)


def test_non_image_files_are_counted(tmp_path: Path):
    _tree(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "a" / "Thumbs.db").write_bytes(b"x")
    ds = scan(tmp_path)
    assert [Path(s.source).name for s in ds.skipped] == ["Thumbs.db"]


def test_real_hyperkvasir(hyper_kvasir: Path):
    ds = scan(hyper_kvasir)
    counts = ds.counts()
    assert set(counts) >= {"polyps", "cecum", "bbps-2-3", "bbps-0-1", "impacted-stool"}
    assert counts["polyps"] == 857 and counts["impacted-stool"] == 121
