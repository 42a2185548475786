"""capsule-convert on tiny synthetic data: the real training and conversion code."""

import json
from pathlib import Path

import numpy as np
import pytest

from convert.cli import main as convert_main
from edge.models.card import load_card
from tests.conftest import synthetic_frame, write_rgb

# capsule-convert's commands import tensorflow when they run (convert.cli does not).
pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_every_artefact_has_a_complete_card(tiny_run: Path):
    for file, fmt, precision in [
        ("int8.tflite", "tflite", "int8"),
        ("fp32.tflite", "tflite", "fp32"),
        ("int8.xml", "openvino", "int8"),
        ("fp32.xml", "openvino", "fp32"),
        ("fp32.onnx", "onnx", "fp32"),
    ]:
        card = load_card(tiny_run / file)
        card.verify()
        assert (card.format, card.precision) == (fmt, precision)
        assert card.labels == ["mucosa", "stool"]
        raw = card.raw
        assert raw["input"]["shape"] == [1, 32, 32, 3]
        assert raw["training"]["frames"] == 48
        for view in ("as_is", "overlays_blacked_out"):
            assert 0.0 <= raw["evaluation"][view]["macro_f1"] <= 1.0
        assert "litert_openvino_int8_top1_agreement" in raw["int8_check"]
    int8 = load_card(tiny_run / "int8.tflite")
    fp32 = load_card(tiny_run / "fp32.tflite")
    assert int8.raw["evaluation"]["fp32_reference"]["as_is"] == fp32.raw["evaluation"]["as_is"]
    assert int8.input_quantization is not None
    assert int8.raw["quantization"]["calibration_split"] == "train"


def test_tiny_model_learns_the_synthetic_classes(tiny_run: Path):
    card = load_card(tiny_run / "fp32.tflite")
    assert card.raw["evaluation"]["as_is"]["accuracy"] >= 0.8


def test_split_keeps_train_and_validation_apart(tiny_run: Path):
    split = json.loads((tiny_run.parent / "split.json").read_text())
    assert split["validation"] and not set(split["train"]) & set(split["validation"])
    assert len(split["train"]) + len(split["validation"]) == 48


def test_quantize_fails_loudly_beyond_tolerance(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
):
    # A negative tolerance cannot be met: int8 would have to beat fp32 by 50 points.
    for name in ("model.keras", "split.json", "training.json"):
        (tmp_path / name).write_bytes((tiny_run.parent / name).read_bytes())
    code = convert_main(
        [
            "quantize",
            "--run",
            str(tmp_path),
            "--data",
            str(tiny_dataset),
            "--tolerance",
            "-50",
            "--calibration",
            "8",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "int8.tflite loses" in err and "tolerance -50.0 points" in err
    assert load_card(tmp_path / "artefacts" / "int8.tflite").raw["int8_check"]["passed"] is False


def test_empty_class_is_a_one_line_error(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_rgb(tmp_path / "data" / "a" / f"{i}.jpg", synthetic_frame("mucosa", rng, 40, 32))
    (tmp_path / "data" / "b").mkdir()
    code = convert_main(
        ["train-classifier", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("capsule-convert: ") and "without images: b" in err
    assert "\n" not in err


def test_class_with_only_unreadable_files(tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_rgb(tmp_path / "data" / "a" / f"{i}.jpg", synthetic_frame("mucosa", rng, 40, 32))
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "zero.jpg").write_bytes(b"")
    code = convert_main(
        ["train-classifier", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    )
    assert code == 2
    assert "no readable frames in class folder(s): b" in capsys.readouterr().err


def test_missing_data_folder(tmp_path: Path, capsys):
    code = convert_main(
        ["train-classifier", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
    )
    assert code == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_unknown_arch(tiny_dataset: Path, tmp_path: Path, capsys):
    code = convert_main(
        [
            "train-classifier",
            "--data",
            str(tiny_dataset),
            "--arch",
            "resnet9000",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "unknown arch 'resnet9000'" in capsys.readouterr().err


def test_seed_is_the_prototype_layer_for_layer():
    from convert.archs import seed

    model = seed(6)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(c.filters, c.kernel_size) for c in convs] == [(32, (3, 3)), (128, (3, 3))]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert [d.units for d in dense] == [64, 6]
    assert dense[-1].activation.__name__ == "softmax"
    assert model.input_shape == (None, 128, 128, 3)


def test_quantize_a_folder_that_is_not_a_run(tiny_dataset: Path, tmp_path: Path, capsys):
    code = convert_main(["quantize", "--run", str(tmp_path), "--data", str(tiny_dataset)])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a train-classifier run folder (training.json is missing)" in err


def test_train_then_quantize_from_the_command_line(tiny_dataset: Path, tmp_path: Path, capsys):
    code = convert_main(
        [
            "train-classifier",
            "--data",
            str(tiny_dataset),
            "--out",
            str(tmp_path / "run"),
            "--size",
            "32",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--quantize",
            "--tolerance",
            "100",
            "--calibration",
            "8",
            "--name",
            "tiny",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "LiteRT int8 vs OpenVINO int8 top-1 agreement" in out
    assert load_card(tmp_path / "run" / "artefacts" / "int8.xml").name == "tiny-int8-openvino"


def test_a_command_run_in_the_wrong_profile_names_the_profile(tmp_path: Path):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("yolov5") is not None:
        pytest.skip("this environment has the detector-train profile")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "convert.cli",
            "train-detector",
            "--data",
            str(tmp_path),
            "--split",
            str(tmp_path / "split.json"),
            # A name no run has: a finished run of the default name would just be reported.
            "--name",
            f"profile-check-{tmp_path.name}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "install the 'detector-train' profile" in proc.stderr
    assert "Traceback" not in proc.stderr
