"""capsule-edge as a user runs it, in-process, on the bundled models (no tensorflow).

Each assertion is one a broken feature fails: the label printed is the model's, the
metrics are those of the predictions, the blackout flag blacks out every frame."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge.eval.classifier
from edge.bundled import bundled_cards, models_root
from edge.cli import main
from edge.frames import read_image
from edge.models.classifier import Classifier
from tests.conftest import HYPER_KVASIR, REPO, synthetic_frame, write_rgb

EDGECNN = models_root() / "classifier" / "edgecnn"
SPLIT = EDGECNN / "split.json"
LABELS = ["bbps-0-1", "bbps-2-3", "cecum", "impacted-stool", "polyps"]


def _capsule_edge(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: a crash inside a library is an exit code here."""
    code = f"import sys; from edge.cli import main; sys.exit(main({args!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    for i, label in enumerate(["mucosa", "stool", "mucosa"]):
        write_rgb(tmp_path / "frames" / f"{i}-{label}.jpg", synthetic_frame(label, rng))
    (tmp_path / "frames" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    write_rgb(tmp_path / "frames" / "dot.png", np.full((1, 1, 3), 120, np.uint8))
    return tmp_path / "frames"


def test_classify_prints_the_models_class_and_counts_skips(frames_dir: Path, capsys):
    code = main(["classify", str(frames_dir)])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert code == 0
    assert len(lines) == 6
    by_name = {Path(line.split("\t")[0]).name: line.split("\t") for line in lines}
    assert by_name["broken.jpg"][1] == "skipped"
    assert by_name["notes.txt"][1] == "skipped"
    # A 1x1 frame was classified (impacted-stool 0.934): now a counted skip.
    assert by_name["dot.png"][1:] == ["skipped", "image is 1x1, under the 32 px minimum side"]
    with Classifier.open(EDGECNN / "int8.tflite") as clf:  # the default model, in code
        for name in ("0-mucosa.jpg", "1-stool.jpg", "2-mucosa.jpg"):
            top = clf.classify(read_image(frames_dir / name)).top
            assert by_name[name][1:3] == [top.label, f"{top.score:.3f}"]
    assert "3 frames classified, 3 skipped" in err


def _validation_frames(per_class: int) -> dict[str, list[Path]]:
    keys = json.loads(SPLIT.read_text())["validation"]
    chosen: dict[str, list[Path]] = {}
    for key in keys:
        label = key.split("/")[-2]
        if len(chosen.setdefault(label, [])) < per_class:
            chosen[label].append(HYPER_KVASIR / key)
    return chosen


def test_classify_names_the_true_class_of_real_frames(hyper_kvasir: Path, tmp_path, capsys):
    chosen = _validation_frames(4)
    assert sorted(chosen) == LABELS
    files = [p for paths in chosen.values() for p in paths]
    assert main(["classify", *map(str, files)]) == 0
    printed = {
        line.split("\t")[0]: line.split("\t")[1]
        for line in capsys.readouterr().out.split("\n")
        if line
    }
    right = sum(printed[str(p)] == label for label, paths in chosen.items() for p in paths)
    assert right >= 18, printed  # 20 frames; the model's validation accuracy is 0.96


@pytest.fixture
def eval_data(tmp_path: Path) -> Path:
    """Class folders named as the bundled model's classes: real validation frames where
    ../shared/data is present, synthetic ones otherwise; one class the model does not
    know and one frame under the minimum size."""
    root = tmp_path / "data"
    if HYPER_KVASIR.is_dir():
        for label, paths in _validation_frames(3).items():
            for p in paths:
                (root / label).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, root / label / p.name)
    else:
        rng = np.random.default_rng(11)
        for i, label in enumerate(LABELS):
            for j in range(3):
                kind = "stool" if (i + j) % 2 else "mucosa"
                write_rgb(root / label / f"{j}.jpg", synthetic_frame(kind, rng))
    write_rgb(root / "z-line" / "z.jpg", synthetic_frame("mucosa", np.random.default_rng(0)))
    write_rgb(root / "polyps" / "tiny.png", np.zeros((20, 300, 3), np.uint8))
    return root


def _expected_metrics(data: Path, model: Path, backend: str) -> dict:
    """Accuracy, macro-F1 and confusion matrix computed here, from the model's own
    predictions for each frame, independently of edge.metrics."""
    truth, predicted = [], []
    with Classifier.open(model, backend) as clf:
        for label in LABELS:
            for path in sorted((data / label).glob("*.jpg")):
                truth.append(LABELS.index(label))
                predicted.append(clf.classify(read_image(path)).top.index)
    matrix = np.zeros((5, 5), int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[t, p] += 1
    f1s = []
    for c in range(5):
        if matrix[c].sum() == 0:
            continue
        tp = matrix[c, c]
        precision = tp / matrix[:, c].sum() if matrix[:, c].sum() else 0.0
        recall = tp / matrix[c].sum()
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return {
        "n": len(truth),
        "accuracy": np.trace(matrix) / len(truth),
        "macro_f1": float(np.mean(f1s)),
        "confusion_matrix": matrix.tolist(),
    }


@pytest.mark.parametrize(
    ("backend", "file"),
    [("litert", "int8.tflite"), ("openvino", "int8.xml"), ("onnxruntime", "fp32.onnx")],
)
def test_eval_classify_reports_the_metrics_of_its_predictions(
    eval_data: Path, tmp_path: Path, capsys, backend: str, file: str
):
    out_json = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "classify",
            "--data",
            str(eval_data),
            "--backend",
            backend,
            "--json",
            str(out_json),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out_json.read_text())
    expected = _expected_metrics(eval_data, EDGECNN / file, backend)
    assert result["n"] == expected["n"] == 15 and result["backend"] == backend
    assert result["confusion_matrix"] == expected["confusion_matrix"]
    assert result["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-4)
    assert result["macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-4)
    if HYPER_KVASIR.is_dir():  # real frames: the model's promise holds on them too
        assert result["macro_f1"] >= 0.8
    assert result["skipped_unknown_class"] == {"z-line": 1}
    assert [Path(s.split(":")[0]).name for s in result["skipped"]] == ["tiny.png"]
    assert f"accuracy {result['accuracy']:.4f}" in text and "confusion matrix" in text


def test_eval_on_a_split_and_with_overlays_blacked_out(
    eval_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    frames = sorted(p.relative_to(eval_data).as_posix() for p in eval_data.rglob("*.jpg"))
    validation = [k for k in frames if not k.startswith("z-line")][::2]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "validation": validation}))
    seen: list[tuple[int, ...]] = []
    real = edge.eval.classifier.black_out_overlays

    def spy(image: np.ndarray) -> np.ndarray:
        seen.append(image.shape)
        return real(image)

    monkeypatch.setattr(edge.eval.classifier, "black_out_overlays", spy)
    runs = {}
    for flag in ([], ["--blackout-overlays"]):
        out_json = tmp_path / f"eval{len(flag)}.json"
        assert (
            main(
                [
                    "eval",
                    "classify",
                    "--data",
                    str(eval_data),
                    "--split",
                    str(split),
                    *flag,
                    "--json",
                    str(out_json),
                ]
            )
            == 0
        )
        runs[bool(flag)] = json.loads(out_json.read_text())
    assert runs[False]["n"] == runs[True]["n"] == len(validation) == 8
    # Every evaluated frame, and only with the flag, went through the blackout.
    assert len(seen) == len(validation)
    assert all(len(shape) == 3 and shape[2] == 3 for shape in seen)
    assert runs[True]["overlays_blacked_out"] and not runs[False]["overlays_blacked_out"]
    # The neutralisation covers the overlay regions: blacking them out changes nothing.
    assert runs[True]["confusion_matrix"] == runs[False]["confusion_matrix"]


def test_eval_missing_data_is_one_line(tmp_path: Path, capsys):
    code = main(["eval", "classify", "--data", str(tmp_path / "gone")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "gone: no such folder" in err


def test_models_lists_the_bundled_cards(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for card in bundled_cards():
        row = next(line for line in out.splitlines() if line.endswith(card.sha256))
        assert row.startswith(card.name) and f"{card.size_bytes() / 1e6:.2f}MB" in row
        assert card.size_bytes() == sum(p.stat().st_size for p in card.artefact_files())


# --- one-line errors where there were crashes and tracebacks ------------------------------


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    return write_rgb(tmp_path / "f.jpg", synthetic_frame("mucosa", np.random.default_rng(2)))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "100000"], "threads must be 0 (every core) to 256, got 100000"),
        (["--threads", "-1"], "threads must be 0 (every core) to 256, got -1"),
        (["--device", "NPU"], "--device NPU: backend 'litert' does not take it (only openvino"),
        (["--precision", "f16"], "--precision f16: backend 'litert' does not take it"),
        (["--backend", "openvino", "--delegate", "x.so"], "--delegate x.so: backend 'openvino'"),
        (["--backend", "onnxruntime", "--device", "GPU"], "--device GPU: backend 'onnxruntime'"),
        (["--providers", "CUDAExecutionProvider"], "--providers CUDAExecutionProvider: backend"),
        (["--delegate", "libedgetpu-not-here.so.1"], "'libedgetpu-not-here.so.1' could not be"),
    ],
)
def test_a_bad_backend_option_is_one_line(frame: Path, tmp_path: Path, flags, message):
    """--threads 100000 was a segfault; LiteRT given --device NPU ran on the CPU without
    a word; a missing delegate printed LiteRT's own traceback after the message."""
    proc = _capsule_edge(["classify", str(frame), *flags], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""


def test_a_card_with_a_field_of_the_wrong_type_is_one_line(frame: Path, tmp_path: Path, capsys):
    shutil.copyfile(EDGECNN / "int8.tflite", tmp_path / "int8.tflite")
    raw = json.loads((EDGECNN / "int8.tflite.card.json").read_text())
    raw["input"] = "oops"
    (tmp_path / "int8.tflite.card.json").write_text(json.dumps(raw))
    code = main(["classify", str(frame), "--model", str(tmp_path / "int8.tflite")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "int8.tflite.card.json: input must be an object" in err


def test_flipped_openvino_weights_are_one_line(frame: Path, tmp_path: Path, capsys):
    for name in ("int8.xml", "int8.bin", "int8.xml.card.json"):
        shutil.copyfile(EDGECNN / name, tmp_path / name)
    data = bytearray((tmp_path / "int8.bin").read_bytes())
    data[1000:1590] = bytes(b ^ 0xFF for b in data[1000:1590])
    (tmp_path / "int8.bin").write_bytes(bytes(data))
    args = ["classify", str(frame), "--backend", "openvino", "--model", str(tmp_path / "int8.xml")]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "int8.bin: sha256" in err and "does not match its card" in err


def test_a_100_megapixel_tiff_is_refused_before_decoding(tmp_path: Path, capsys):
    path = tmp_path / "big.tif"
    assert cv2.imwrite(str(path), np.zeros((10000, 10000), np.uint8))  # 100 MP, 1.7 MB
    assert main(["classify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.strip() == f"{path}\tskipped\timage is 10000x10000, over the 40 MP limit"
