"""A capsule detector's own data: its split (near-twins on one side), the class names from
data.yaml, and the training folder written blacked out beyond the field of view."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.detector_data import prepare
from convert.detector_split import sequence_runs, split_detection_folder, write_split
from edge.errors import BadInputError
from edge.eval.detection_data import yolo_names
from edge.eval.detector import labelled_set, load_detection_folder
from edge.fov import FieldOfView

WCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wce-bleedgen"


def _yolo_folder(root: Path, runs: int = 12, per_run: int = 4) -> dict[str, int]:
    """``runs`` short "videos" of ``per_run`` near-identical frames; even runs bleed."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    run_of = {}
    for run in range(runs):
        base = cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (0, 0), 4)
        for k in range(per_run):
            name = f"{chr(97 + run)}{k}"  # run a: a0, a1, ... (a numbered video run)
            frame = np.clip(base.astype(int) + rng.integers(-2, 3, base.shape), 0, 255)
            cv2.imwrite(str(root / "images" / f"{name}.jpg"), frame.astype(np.uint8))
            label = "0 0.5 0.5 0.3 0.3\n" if run % 2 == 0 else ""
            (root / "labels" / f"{name}.txt").write_text(label)
            run_of[f"images/{name}.jpg"] = run
    (root / "data.yaml").write_text("names:\n- bleeding\nnc: 1\n")
    return run_of


def test_split_keeps_each_run_on_one_side(tmp_path: Path) -> None:
    run_of = _yolo_folder(tmp_path / "data")
    doc = split_detection_folder(load_detection_folder(tmp_path / "data"), val_fraction=0.25)
    train, val = set(doc["train"]), set(doc["validation"])
    assert train | val == set(run_of) and not train & val
    assert {run_of[k] for k in train}.isdisjoint({run_of[k] for k in val})
    assert doc["groups"] == 12
    assert 0 < doc["validation_with_boxes"] < len(val)  # both kinds of frame validate


def test_sequence_runs() -> None:
    names = [
        "img-10-_png.rf.aa.jpg",
        "img-11-_png.rf.bb.jpg",
        "img-12-_png.rf.cc.jpg",
        "img-14-_png.rf.dd.jpg",  # a gap: a new run
        "img-11-_png_jpg.rf.ee.jpg",  # another series
        "img-12-_png_jpg.rf.ff.jpg",
        "frame.jpg",
    ]
    runs = sequence_runs(names)
    assert runs[0] == runs[1] == runs[2]
    assert len({runs[0], runs[3], runs[4], runs[6]}) == 4
    assert runs[4] == runs[5]


def test_eval_reads_a_detector_split(tmp_path: Path) -> None:
    _yolo_folder(tmp_path / "data")
    data = load_detection_folder(tmp_path / "data")
    doc = split_detection_folder(data, val_fraction=0.25)
    split = write_split(doc, tmp_path / "split.json")
    chosen = labelled_set(tmp_path / "data", split)
    names = {f"images/{f.path.name}" for f in chosen.frames}
    assert names == set(doc["validation"])
    assert data.samples[0].labels in ((), ("bleeding",))
    assert {lab for s in data.samples for lab in s.labels} == {"bleeding"}  # from data.yaml


def test_yolo_names(tmp_path: Path) -> None:
    assert yolo_names(tmp_path, ["polyp"]) == ["polyp"]  # no data.yaml
    (tmp_path / "data.yaml").write_text("names: {0: blood, 1: ulcer}\n")
    assert yolo_names(tmp_path, []) == ["blood", "ulcer"]
    for bad in ("names: 3\n", "names: {1: a}\n", "names: [\n", "- a\n"):
        (tmp_path / "data.yaml").write_text(bad)
        with pytest.raises(BadInputError, match=r"data\.yaml"):
            yolo_names(tmp_path, [])


def test_prepared_frames_are_black_beyond_the_fov(tmp_path: Path) -> None:
    _yolo_folder(tmp_path / "data")
    split = write_split(
        split_detection_folder(load_detection_folder(tmp_path / "data"), val_fraction=0.25),
        tmp_path / "split.json",
    )
    fov = FieldOfView(0.5, 0.5, 0.4)
    prepared = prepare(tmp_path / "data", tmp_path / "out", split, fov=fov, inset_blackout=0.0)
    assert prepared.names == ["bleeding"]
    assert prepared.counts["fov_applied"] == 48
    assert "names: ['bleeding']" in prepared.yaml.read_text()
    inside = fov.mask(96, 96)
    for side in ("train", "val"):
        written = sorted((tmp_path / "out" / "images" / side).glob("*.png"))
        assert written
        for path in written:
            image = cv2.imread(str(path))
            assert not image[~inside].any() and image[inside].any()
            label = (tmp_path / "out" / "labels" / side / f"{path.stem}.txt").read_text()
            source = (tmp_path / "data" / "labels" / f"{path.stem}.txt").read_text()
            # Boxes unchanged, class 0.
            assert [float(v) for v in label.split()] == [float(v) for v in source.split()]


@pytest.mark.data
def test_wce_bleedgen_split_has_no_twin_across_sides() -> None:
    if not WCE.is_dir():
        pytest.skip(f"real data not present at {WCE}")
    data = load_detection_folder(WCE)
    assert len(data.samples) == 2022
    doc = split_detection_folder(data)
    by_key = {s.path.relative_to(WCE).as_posix(): s for s in data.samples}

    def thumbs(keys: list[str]) -> np.ndarray:
        # Checked independently of the grouping's own thumbnails: the whole disc, 24 px.
        rows = []
        for key in keys:
            grey = cv2.imread(str(by_key[key].path), cv2.IMREAD_GRAYSCALE)[40:216, 40:216]
            t = cv2.resize(grey, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
            t = t.ravel() - t.mean()
            rows.append(t / (np.linalg.norm(t) + 1e-6))
        return np.stack(rows)

    numbered = {}
    for side in ("train", "validation"):
        for key in doc[side]:
            _, number, tail = key.split("-", 2)
            numbered[(tail.split(".")[0], int(number))] = side
    neighbours = sum(
        numbered.get((series, n + 1), side) != side for (series, n), side in numbered.items()
    )
    assert neighbours == 0  # no frame of a video run on the other side of its neighbour
    sim = thumbs(doc["train"]) @ thumbs(doc["validation"]).T
    assert float(sim.max()) < 0.995  # the data README's twins (> 0.99) never straddle
    assert 380 <= len(doc["validation"]) <= 430
    share = doc["validation_with_boxes"] / len(doc["validation"])
    assert share == pytest.approx(1052 / 2022, abs=0.05)


def test_a_bad_hyp_override_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from convert.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train-detector", "--data", str(tmp_path), "--hyp", "scale"])
    assert exit_.value.code == 2
    assert "expected KEY=NUMBER" in capsys.readouterr().err
