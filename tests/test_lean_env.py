"""The runtime in the lean environment (.venv, edge profile only): no tensorflow, no torch."""

import ast
import json
import subprocess
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = ("tensorflow", "torch", "keras", "convert")


def test_edge_never_imports_host_packages():
    for path in (REPO / "edge").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}:{node.lineno} imports {name}"


def test_lean_env_has_no_tensorflow_or_torch(lean_python: Path):
    code = (
        "import importlib.util as u; "
        "print([m for m in ('tensorflow', 'torch', 'keras') if u.find_spec(m)])"
    )
    out = subprocess.run([lean_python, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lean_env_classifies_and_evaluates(
    lean_python: Path, tiny_run: Path, tiny_dataset: Path, tmp_path: Path
):
    result = tmp_path / "eval.json"
    code = f"""
import sys
from edge.cli import main
rc1 = main(["classify", {str(tiny_dataset)!r}, "--model", {str(tiny_run / "int8.tflite")!r}])
rc2 = main(["eval", "classify", "--data", {str(tiny_dataset)!r}, "--backend", "openvino",
            "--model", {str(tiny_run / "int8.xml")!r}, "--json", {str(result)!r}])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print("RESULT", rc1, rc2, loaded, file=sys.stderr)
"""
    proc = subprocess.run([lean_python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "RESULT 0 0 []" in proc.stderr, proc.stderr[-2000:]
    classified = [
        line for line in proc.stdout.splitlines() if line.endswith(" ms") and "\t" in line
    ]
    assert len(classified) == 48
    assert json.loads(result.read_text())["n"] == 48
