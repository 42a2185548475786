import json
from pathlib import Path

import numpy as np
import pytest

from edge.errors import BadInputError
from edge.eval.detection_data import load_kvasir_seg, load_yolo
from edge.types import BBox
from tests.conftest import SHARED_DATA, synthetic_frame, write_rgb


def test_bbox_iou_and_clip():
    a, b = BBox(0, 0, 10, 10), BBox(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(BBox(20, 20, 30, 30)) == 0.0
    assert BBox(-5, 2, 120, 90).clip(100, 80) == BBox(0, 2, 100, 80)
    assert BBox(3, 3, 3, 9).area == 0.0


def _frames(folder: Path, names: list[str], size=(60, 40)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        write_rgb(folder / name, synthetic_frame("mucosa", rng, *size))


def test_kvasir_seg_layout(tmp_path: Path):
    _frames(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "images" / "notes.txt").write_text("x")
    boxes = {
        "a": {
            "height": 40,
            "width": 60,
            "bbox": [
                {"label": "polyp", "xmin": 5, "ymin": 6, "xmax": 30, "ymax": 20},
                {"label": "polyp", "xmin": 50, "ymin": 10, "xmax": 90, "ymax": 60},  # past the edge
            ],
        },
        "b": {
            "height": 40,
            "width": 60,
            "bbox": [
                {"label": "polyp", "xmin": 12, "ymin": 12, "xmax": 12, "ymax": 30},  # no width
            ],
        },
    }
    (tmp_path / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    ds = load_kvasir_seg(tmp_path)
    by_name = {s.path.name: s for s in ds.samples}
    # b.jpg's only box has no area: it is a polyp image without a usable box, set aside,
    # not a polyp-free frame (where a detection of its polyp would be a false alarm).
    assert set(by_name) == {"a.jpg"}
    assert by_name["a.jpg"].boxes == (BBox(5, 6, 30, 20), BBox(50, 10, 60, 40))
    assert [Path(s.source).name for s in ds.set_aside] == ["b.jpg"]
    assert "set aside" in ds.set_aside[0].reason
    reasons = sorted(s.reason for s in ds.skipped)
    assert any(r.startswith("box with no area dropped") for r in reasons)
    assert "no entry in kavsir_bboxes.json" in reasons
    assert "not an image file (by its name)" in reasons


def test_kvasir_seg_bad_layouts(tmp_path: Path):
    with pytest.raises(BadInputError, match="no images/ folder"):
        load_kvasir_seg(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(BadInputError, match=r"no kavsir_bboxes\.json"):
        load_kvasir_seg(tmp_path)
    (tmp_path / "kavsir_bboxes.json").write_text("{not json")
    with pytest.raises(BadInputError, match=r"kavsir_bboxes\.json: unreadable"):
        load_kvasir_seg(tmp_path)
    _frames(tmp_path / "images", ["a.jpg"])
    (tmp_path / "kavsir_bboxes.json").write_text(json.dumps({"a": {"bbox": [{"x": 1}]}}))
    with pytest.raises(BadInputError, match=r"\[a\]: box is not"):
        load_kvasir_seg(tmp_path)


def test_yolo_layout(tmp_path: Path):
    _frames(tmp_path / "images", ["one.jpg", "two.png", "bg.jpg"], size=(100, 50))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "one.txt").write_text("0 0.5 0.5 0.2 0.4\n\n0 0.5 0.5 0 0.3\n")
    (tmp_path / "labels" / "two.txt").write_text("3 0.5 0.5 0.2 0.2\n0 oops 1 2 3\n")
    ds = load_yolo(tmp_path, ["polyp"])
    by_name = {s.path.name: s for s in ds.samples}
    assert by_name["one.jpg"].boxes == (BBox(40, 15, 60, 35),)
    assert by_name["one.jpg"].labels == ("polyp",)
    assert by_name["bg.jpg"].boxes == ()  # no label file: polyp-free
    # Every line of two.txt is unusable: neither a polyp frame nor polyp-free.
    assert "two.png" not in by_name
    assert [Path(s.source).name for s in ds.set_aside] == ["two.png"]
    where = sorted(Path(s.source).name for s in ds.skipped)
    assert where == ["one.txt:3", "two.txt:1", "two.txt:2"]


def test_an_empty_label_file_is_polyp_free(tmp_path: Path):
    _frames(tmp_path / "images", ["bg.jpg"], size=(100, 50))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "bg.txt").write_text("\n")
    ds = load_yolo(tmp_path, ["polyp"])
    assert [s.boxes for s in ds.samples] == [()] and not ds.set_aside


@pytest.mark.data
def test_real_kvasir_seg():
    root = SHARED_DATA / "kvasir-seg"
    if not root.is_dir():
        pytest.skip(f"real data not present at {root}")
    ds = load_kvasir_seg(root)
    assert len(ds.samples) == 857
    assert ds.n_boxes == 922  # the few-pixel boxes have area and are kept
    assert not ds.skipped
