"""capsule-edge as a user runs it, in-process, against a tiny converted model."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from tests.conftest import synthetic_frame, write_rgb


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    for i, label in enumerate(["mucosa", "stool", "mucosa"]):
        write_rgb(tmp_path / "frames" / f"{i}-{label}.jpg", synthetic_frame(label, rng))
    (tmp_path / "frames" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    return tmp_path / "frames"


def test_classify_prints_a_line_per_frame_and_counts_skips(tiny_run, frames_dir, capsys):
    code = main(["classify", str(frames_dir), "--model", str(tiny_run / "int8.tflite")])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert code == 0
    assert len(lines) == 5
    by_name = {Path(line.split("\t")[0]).name: line.split("\t") for line in lines}
    assert by_name["broken.jpg"][1] == "skipped"
    assert by_name["notes.txt"][1] == "skipped"
    assert by_name["1-stool.jpg"][1] in ("mucosa", "stool")
    assert "3 frames classified, 2 skipped" in err


def test_classify_with_nothing_usable_fails(tiny_run, tmp_path, capsys):
    code = main(
        ["classify", str(tmp_path / "nothing.jpg"), "--model", str(tiny_run / "int8.tflite")]
    )
    assert code == 1
    assert "no such file or folder" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("backend", "file"),
    [("litert", "int8.tflite"), ("openvino", "int8.xml"), ("onnxruntime", "fp32.onnx")],
)
def test_eval_classify_writes_json(tiny_run, tiny_dataset, tmp_path, capsys, backend, file):
    out_json = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "classify",
            "--data",
            str(tiny_dataset),
            "--backend",
            backend,
            "--model",
            str(tiny_run / file),
            "--json",
            str(out_json),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out_json.read_text())
    assert result["n"] == 48 and result["backend"] == backend
    assert 0.0 <= result["macro_f1"] <= 1.0 and 0.0 <= result["accuracy"] <= 1.0
    assert sum(map(sum, result["confusion_matrix"])) == 48
    assert f"accuracy {result['accuracy']:.4f}" in text and "confusion matrix" in text


def test_eval_on_the_split_and_with_overlays_blacked_out(tiny_run, tiny_dataset, tmp_path, capsys):
    split = tiny_run.parent / "split.json"
    out_json = tmp_path / "eval.json"
    main(
        [
            "eval",
            "classify",
            "--data",
            str(tiny_dataset),
            "--split",
            str(split),
            "--blackout-overlays",
            "--model",
            str(tiny_run / "int8.tflite"),
            "--json",
            str(out_json),
        ]
    )
    result = json.loads(out_json.read_text())
    assert result["n"] == len(json.loads(split.read_text())["validation"])
    assert result["overlays_blacked_out"] is True


def test_eval_counts_classes_the_model_does_not_know(tiny_run, tiny_dataset, tmp_path, capsys):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    write_rgb(data / "mucosa" / "a.jpg", synthetic_frame("mucosa", rng))
    write_rgb(data / "z-line" / "b.jpg", synthetic_frame("mucosa", rng))
    code = main(["eval", "classify", "--data", str(data), "--model", str(tiny_run / "int8.tflite")])
    out = capsys.readouterr().out
    assert code == 0
    assert "frames 1 " in out and "does not know: z-line (1)" in out


def test_eval_missing_data_is_one_line(tiny_run, tmp_path, capsys):
    code = main(
        [
            "eval",
            "classify",
            "--data",
            str(tmp_path / "gone"),
            "--model",
            str(tiny_run / "int8.tflite"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "gone: no such folder" in err


def test_models_lists_cards(tiny_run, monkeypatch, capsys):
    monkeypatch.setenv("CAPSULE_EDGE_MODELS", str(tiny_run))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "edgecnn-int8-tflite" in out and "edgecnn-fp32-onnx" in out
    sha = json.loads((tiny_run / "int8.tflite.card.json").read_text())["sha256"]
    assert sha in out
