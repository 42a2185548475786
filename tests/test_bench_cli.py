"""`capsule-edge bench` in the lean environment, as a user runs it: its JSON rows, what it
says of a backend that is not installed, of a model that fails, and of a bad flag."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.bench.macs import count
from edge.bundled import models_root
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
ROW_FIELDS = (
    "model", "backend", "precision", "threads", "p50_ms", "p90_ms", "p99_ms", "fps", "load_s",
    "peak_rss_mb", "floor_ratio", "first_ms", "size_mb", "gmacs",
)  # fmt: skip
pytestmark = pytest.mark.slow  # a process per row


def _bench(lean_python: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(lean_python), "-m", "edge.cli", "bench", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=env,
    )


def test_quick_json_has_every_field_of_every_row(lean_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        lean_python,
        *("--quick", "--model", "edgecnn", "--threads", "1,2", "--rates", "5", "--json", str(out)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    measured = [r for r in doc["rows"] if "skipped" not in r]
    # edgecnn: fp32 tflite, fp32 IR, int8 tflite, int8 IR, on their backends, 1 and 2 threads
    assert {(r["precision"], r["backend"], r["threads"]) for r in measured} == {
        (p, b, t) for p in ("fp32", "int8") for b in ("litert", "openvino") for t in (1, 2)
    }
    card = json.loads((models_root() / "classifier/edgecnn/int8.tflite.card.json").read_text())
    macs = count(models_root() / "classifier/edgecnn/int8.tflite")
    for row in measured:
        assert "error" not in row, row
        missing = [f for f in ROW_FIELDS if row.get(f) is None]
        assert not missing, (missing, row)
        assert row["runs"] == 30 and row["model"] == "edgecnn"
        assert row["gmacs"] == round(macs / 1e9, 4)
        if SHARED_DATA.is_dir():  # the accuracy is the card's, measured again on its split
            # OpenVINO's int8 kernels differ with the CPU (AVX2, VNNI, AMX): on a 2-core
            # AMD EPYC with AVX2 only, 3 of 368 frames go the other way (0.9647; its card,
            # from another machine, 0.9565): within the int8 gate there, exact elsewhere.
            within = 0.015 if (row["precision"], row["backend"]) == ("int8", "openvino") else 1e-3
            assert row["accuracy"] == pytest.approx(
                card["evaluation"]["as_is"]["accuracy"], abs=within
            )
            assert row["eval_frames"] == card["evaluation"]["frames"]
    # the lean install has no ONNX Runtime: its row says so and what brings it
    (onnx,) = [r for r in doc["rows"] if r["backend"] == "onnxruntime" and r["threads"] == 1]
    assert "pip install 'capsule-edge[onnx]'" in onnx["skipped"]
    assert doc["machine"]["cores"] and doc["machine"]["cpu"]
    assert {(p["precision"], p["threads"]) for p in doc["floor"]} == {
        (p, t) for p in ("fp32", "int8") for t in (1, 2)
    }
    assert "| edgecnn | int8 | tflite | litert | 1 |" in done.stdout
    (rate,) = doc["e2e"]["rates"]  # end to end over the pty, the one rate asked for
    assert rate["fps"] == 5 and rate["inferred"] == rate["frames"] == 15
    assert doc["e2e"]["sustained_fps"] == (5 if rate["sustained"] else None)


def test_a_model_that_fails_keeps_its_row_with_the_reason(
    lean_python: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_root() / "classifier" / "edgecnn", models / "classifier" / "edgecnn")
    for path in (models / "classifier" / "edgecnn").glob("*.card.json"):
        if not path.name.startswith("int8.tflite"):
            path.unlink()
    model = models / "classifier" / "edgecnn" / "int8.tflite"
    model.write_bytes(model.read_bytes()[:-16] + b"\0" * 16)  # no longer its card's sha256
    env = {"CAPSULE_EDGE_MODELS": str(models), "PATH": "/usr/bin:/bin"}
    done = _bench(
        lean_python,
        *("--quick", "--no-accuracy", "--no-e2e", "--threads", "1"),
        *("--json", str(tmp_path / "b.json")),
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert "sha256" in row["error"], row


def test_an_unknown_model_is_one_line(lean_python: Path) -> None:
    done = _bench(lean_python, "--quick", "--model", "nosuch")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("--model nosuch: not a bundled model (capsule-edge models)")
    )


YOLO_PYTHON = REPO / ".venv-yolo" / "bin" / "python"


@pytest.mark.skipif(
    not YOLO_PYTHON.exists(), reason="no detector-train environment (make detector-env)"
)
def test_the_pytorch_reference_row_sits_beside_the_int8_rows(
    lean_python: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        lean_python,
        *("--quick", "--runs", "5", "--model", "yolov5s-256", "--threads", "2", "--no-accuracy"),
        "--no-e2e",
        *("--torch", str(YOLO_PYTHON), "--json", str(out)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    (torch_row,) = [r for r in rows if r["backend"] == "torch"]
    assert "error" not in torch_row, torch_row
    assert torch_row["format"] == "pytorch" and torch_row["runs"] == 5
    onnx = models_root() / "detector" / "yolov5s-256" / "fp32.onnx"
    assert torch_row["gmacs"] == round(count(onnx) / 1e9, 4)
    int8 = [r for r in rows if r["precision"] == "int8" and "p50_ms" in r]
    assert int8 and all(
        r["speedup_vs_torch"] == round(torch_row["p50_ms"] / r["p50_ms"], 2) for r in int8
    )


def _doc(cpu: str, p50: float) -> dict:
    machine = {"cores": 4, "cpu": cpu, "arch": "aarch64", "os": "Raspberry Pi OS", "python": "3.11"}
    row = {"model": "edgecnn", "precision": "int8", "format": "tflite", "backend": "litert"}
    row |= {"threads": 4, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "fps": 1e3 / p50}
    return {"machine": machine, "runs": 300, "warmup": 20, "rows": [row]}


def test_merge_puts_machines_in_one_table_and_into_the_readme(
    lean_python: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "pi5.json", tmp_path / "n100.json"
    a.write_text(json.dumps(_doc("Cortex-A76", 4.25)))
    b.write_text(json.dumps(_doc("Intel N100", 1.5)))
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- capsule-edge bench -->\nold table\n<!-- /capsule-edge bench -->\nafter\n"
    )
    done = _bench(lean_python, "--merge", str(a), str(b), "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "old table" not in text and text.endswith("<!-- /capsule-edge bench -->\nafter\n")
    assert (
        "| 4 cores of Cortex-A76, aarch64: edgecnn | int8 | tflite | litert | 4 | 4.250 |" in text
    )
    assert (
        "| 4 cores of Intel N100, aarch64: edgecnn | int8 | tflite | litert | 4 | 1.500 |" in text
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a bench result"),
        ('{"rows": 3}', "not a bench result (no machine and rows)"),
    ],
)
def test_merge_of_what_is_not_a_result_is_one_line(
    lean_python: Path, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = _bench(lean_python, "--merge", str(bad))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert str(bad) in line and message in line


def test_a_readme_without_markers_is_one_line_and_untouched(
    lean_python: Path, tmp_path: Path
) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_doc("Cortex-A76", 4.0)))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    done = _bench(lean_python, "--merge", str(a), "--readme", str(readme))
    assert done.returncode == 2 and "no <!-- capsule-edge bench -->" in done.stderr
    assert readme.read_text() == "no markers\n"
