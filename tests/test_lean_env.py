"""The runtime in the lean environment (.venv, edge profile only): no tensorflow, no torch."""

import ast
import json
import subprocess
from pathlib import Path

import numpy as np

from edge.bundled import models_root
from edge.frames import read_image
from edge.models.card import load_card
from edge.models.classifier import Classifier
from tests.conftest import REPO, synthetic_frame, write_rgb

EDGECNN = models_root() / "classifier" / "edgecnn"

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


def test_lean_env_classifies_and_evaluates(lean_python: Path, tmp_path: Path):
    """The bundled models, on LiteRT and OpenVINO, over class folders of their labels."""
    data = tmp_path / "data"
    rng = np.random.default_rng(4)
    labels = load_card(EDGECNN / "int8.tflite").labels
    for i, label in enumerate(labels):
        for j in range(3):
            frame = synthetic_frame("stool" if (i + j) % 2 else "mucosa", rng)
            write_rgb(data / label / f"{j}.jpg", frame)
    result = tmp_path / "eval.json"
    code = f"""
import sys
from edge.cli import main
rc1 = main(["classify", {str(data)!r}, "--model", {str(EDGECNN / "int8.tflite")!r}])
rc2 = main(["eval", "classify", "--data", {str(data)!r}, "--backend", "openvino",
            "--model", {str(EDGECNN / "int8.xml")!r}, "--json", {str(result)!r}])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print("RESULT", rc1, rc2, loaded, file=sys.stderr)
"""
    proc = subprocess.run([lean_python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "RESULT 0 0 []" in proc.stderr, proc.stderr[-2000:]
    printed = {
        row[0]: row[1:3]
        for row in (line.split("\t") for line in proc.stdout.splitlines() if line.endswith(" ms"))
    }
    assert len(printed) == 15
    with Classifier.open(EDGECNN / "int8.tflite") as clf:  # the same, in this environment
        for path in sorted(data.rglob("*.jpg")):
            top = clf.classify(read_image(path)).top
            assert printed[str(path)] == [top.label, f"{top.score:.3f}"], path
    evaluated = json.loads(result.read_text())
    assert evaluated["n"] == 15 and evaluated["backend"] == "openvino"
