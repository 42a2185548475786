"""The three backends on a model made by the real convert pipeline."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.backends import BackendOptions, open_backend
from edge.errors import BackendUnavailableError, ModelError
from edge.models.card import load_card
from edge.models.classifier import Classifier
from tests.conftest import REPO, synthetic_frame

ARTEFACTS = [
    ("int8.tflite", "litert"),
    ("fp32.tflite", "litert"),
    ("int8.xml", "openvino"),
    ("fp32.xml", "openvino"),
    ("int8.tflite", "openvino"),
    ("fp32.onnx", "onnxruntime"),
]


@pytest.mark.parametrize(("file", "backend"), ARTEFACTS)
def test_every_backend_classifies_like_fp32(tiny_run: Path, file: str, backend: str):
    rng = np.random.default_rng(5)
    frames = [synthetic_frame(label, rng) for label in ("mucosa", "stool") * 4]
    with Classifier.open(tiny_run / "fp32.tflite", "litert") as reference:
        expected = reference.probabilities([reference.preprocess(f) for f in frames])
    with Classifier.open(tiny_run / file, backend) as clf:
        got = clf.probabilities([clf.preprocess(f) for f in frames])
        results = clf.classify_batch(frames)
    assert got.shape == (8, 2)
    assert np.allclose(got.sum(axis=1), 1.0, atol=0.05)
    tolerance = 0.08 if file.startswith("int8") else 1e-3
    assert np.abs(got - expected).max() < tolerance
    assert [r.top.index for r in results] == list(got.argmax(axis=1))
    assert {s.label for s in results[0].scores} == {"mucosa", "stool"}


def test_int8_tflite_input_spec_carries_quantisation(tiny_run: Path):
    backend = open_backend("litert", tiny_run / "int8.tflite")
    spec = backend.inputs[0]
    assert spec.dtype == np.int8 and spec.shape[1:] == (32, 32, 3)
    assert spec.quantization is not None
    card = load_card(tiny_run / "int8.tflite")
    assert card.input_quantization == spec.quantization
    backend.close()


def test_unknown_backend():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tpu'"):
        open_backend("tpu", Path("m.tflite"))


# LiteRT's Delegate.__del__ trips over its own failed load; that is its noise, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_delegate_library_is_a_clear_error(tiny_run: Path):
    options = BackendOptions(delegate="libedgetpu-not-here.so.1")
    with pytest.raises(BackendUnavailableError, match=r"delegate 'libedgetpu-not-here\.so\.1'"):
        open_backend("litert", tiny_run / "int8.tflite", options)


def test_wrong_format_for_backend(tiny_run: Path):
    with pytest.raises(ModelError, match="backend 'onnxruntime' cannot run a tflite model"):
        Classifier.open(tiny_run / "int8.tflite", "onnxruntime")


def test_missing_onnx_provider(tiny_run: Path):
    options = BackendOptions(providers=("TensorrtExecutionProvider",))
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider not available"):
        open_backend("onnxruntime", tiny_run / "fp32.onnx", options)


def _has_device(kind: str) -> bool:
    import openvino as ov

    return any(d.split(".")[0] == kind for d in ov.Core().available_devices)


@pytest.mark.parametrize(
    ("device", "falls_back"),
    [("AUTO:NPU,CPU", True), ("AUTO", False), ("AUTO:CPU", False), ("AUTO:-NPU", False)],
)
def test_openvino_falling_back_to_the_cpu_is_reported(tiny_run: Path, device: str, falls_back):
    """AUTO given an accelerator this machine lacks runs on the CPU without a word from
    OpenVINO: the backend says so (and the device it really runs on)."""
    if _has_device("NPU"):
        pytest.skip("this machine has an NPU: AUTO:NPU,CPU would use it")
    backend = open_backend("openvino", tiny_run / "int8.xml", BackendOptions(device=device))
    try:
        assert "CPU" in backend.device
        if falls_back:
            assert backend.fallback is not None
            assert "asked for AUTO:NPU,CPU" in backend.fallback and "no NPU" in backend.fallback
        else:
            assert backend.fallback is None
    finally:
        backend.close()


def test_an_onnx_runtime_session_without_a_requested_provider_is_a_fall_back(tiny_run: Path):
    """onnxruntime-gpu on a Jetson whose CUDA libraries do not load drops the CUDA
    provider with only a log line and runs on the CPU: the session it hands back is a
    plain CPU session, as here."""
    import onnxruntime as ort

    from edge.backends.onnxruntime import OnnxRuntimeBackend

    session = ort.InferenceSession(str(tiny_run / "fp32.onnx"), providers=["CPUExecutionProvider"])
    asked = ("CUDAExecutionProvider", "CPUExecutionProvider")
    backend = OnnxRuntimeBackend(session, asked)
    assert backend.device == "CPUExecutionProvider"
    assert (
        backend.fallback is not None and "CUDAExecutionProvider did not start" in backend.fallback
    )
    assert OnnxRuntimeBackend(session, ("CPUExecutionProvider",)).fallback is None


def test_options_are_validated():
    with pytest.raises(ValueError, match="threads"):
        BackendOptions(threads=0)
    with pytest.raises(ValueError, match="precision"):
        BackendOptions(precision="int4")


@pytest.mark.parametrize(
    ("backend", "package"), [("onnxruntime", "onnxruntime"), ("openvino", "openvino")]
)
def test_missing_package_names_the_install_profile(tiny_run: Path, backend: str, package: str):
    # A fresh interpreter in which the package cannot be imported, as on a device without it.
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from pathlib import Path\n"
        "from edge.backends import open_backend\n"
        f"open_backend({backend!r}, Path({str(tiny_run / 'fp32.onnx')!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "capsule-edge[" in proc.stderr and f"backend '{backend}' needs" in proc.stderr


def test_tampered_model_fails_its_checksum(tiny_run: Path, tmp_path: Path):
    for name in ("int8.tflite", "int8.tflite.card.json"):
        (tmp_path / name).write_bytes((tiny_run / name).read_bytes())
    with open(tmp_path / "int8.tflite", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="does not match its card"):
        Classifier.open(tmp_path / "int8.tflite", "litert")


def test_model_without_card(tmp_path: Path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match="no model card beside it"):
        Classifier.open(tmp_path / "m.tflite")


def test_malformed_card(tmp_path: Path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    (tmp_path / "m.tflite.card.json").write_text('{"task": "classification"}')
    with pytest.raises(ModelError, match="card has no 'format' field"):
        Classifier.open(tmp_path / "m.tflite")
