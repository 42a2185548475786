"""The benchmark commands run end to end (they measure; these tests only keep them working)."""

import json
from pathlib import Path

from benchmarks import latency, robustness


def test_latency_table_covers_every_native_artefact(tiny_run: Path, tmp_path: Path, capsys):
    out_json = tmp_path / "latency.json"
    assert latency.main([str(tiny_run), "--runs", "3", "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())["rows"]
    assert {(r["format"], r["precision"], r["backend"]) for r in rows} == {
        ("tflite", "int8", "litert"),
        ("tflite", "fp32", "litert"),
        ("openvino", "int8", "openvino"),
        ("openvino", "fp32", "openvino"),
        ("onnx", "fp32", "onnxruntime"),
    }
    assert all(r["infer_p50_ms"] > 0 for r in rows)
    assert "| edgecnn | tflite | int8 | litert |" in capsys.readouterr().out


def test_robustness_reports_every_shift(tiny_run: Path, tiny_dataset: Path, capsys):
    code = robustness.main(["--data", str(tiny_dataset), "--model", str(tiny_run / "int8.tflite")])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows[1:]] == list(robustness.SHIFTS)
    assert "48 frames" in out
