"""The three backends on the bundled models (no tensorflow needed): the same scores from
every artefact, each backend's own options, clear errors. Cards: test_cards.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.backends import (
    BackendOptions,
    LiteRTOptions,
    OnnxRuntimeOptions,
    OpenVINOOptions,
    open_backend,
    options_for,
    thread_count,
)
from edge.backends.options import MAX_THREADS
from edge.bundled import models_root
from edge.errors import BackendUnavailableError, ModelError, OptionError
from edge.models.card import load_card
from edge.models.classifier import Classifier
from edge.models.detector import Detector
from tests.conftest import REPO, synthetic_frame

EDGECNN = models_root() / "classifier" / "edgecnn"
YOLO = models_root() / "detector" / "yolov5s-256"
LABELS = ["bbps-0-1", "bbps-2-3", "cecum", "impacted-stool", "polyps"]

ARTEFACTS = [
    ("int8.tflite", "litert"),
    ("fp32.tflite", "litert"),
    ("int8.xml", "openvino"),
    ("fp32.xml", "openvino"),
    ("int8.tflite", "openvino"),
    ("fp32.onnx", "onnxruntime"),
]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [synthetic_frame(label, rng) for label in ("mucosa", "stool") * 4]


@pytest.mark.parametrize(("file", "backend"), ARTEFACTS)
def test_every_backend_classifies_like_fp32(file: str, backend: str):
    frames = _frames()
    with Classifier.open(EDGECNN / "fp32.tflite", "litert") as reference:
        expected = reference.probabilities([reference.preprocess(f) for f in frames])
    with Classifier.open(EDGECNN / file, backend) as clf:
        got = clf.probabilities([clf.preprocess(f) for f in frames])
        results = clf.classify_batch(frames)
    assert got.shape == (8, 5)
    assert np.allclose(got.sum(axis=1), 1.0, atol=0.05)
    tolerance = 0.05 if file.startswith("int8") else 1e-3  # measured: 0.012 at most
    assert np.abs(got - expected).max() < tolerance
    assert [r.top.index for r in results] == list(expected.argmax(axis=1))
    assert [s.label for s in results[0].scores] == [LABELS[i] for i in np.argsort(-got[0])]


def test_int8_tflite_input_spec_carries_quantisation():
    backend = open_backend("litert", EDGECNN / "int8.tflite")
    try:
        spec = backend.inputs[0]
        assert spec.dtype == np.int8 and spec.shape[1:] == (128, 128, 3)
        assert spec.quantization is not None
        assert load_card(EDGECNN / "int8.tflite").input_quantization == spec.quantization
    finally:
        backend.close()


def test_unknown_backend():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tpu'"):
        open_backend("tpu", Path("m.tflite"))


# --- options: one type per backend -------------------------------------------------------


def test_each_backend_has_its_own_options():
    assert options_for("litert", {"delegate": "libedgetpu.so.1"}) == LiteRTOptions(
        delegate="libedgetpu.so.1"
    )
    assert options_for("openvino", {"device": "GPU", "precision": "f16"}) == OpenVINOOptions(
        device="GPU", precision="f16"
    )
    assert options_for("onnxruntime", {"providers": ["CUDAExecutionProvider"]}).providers == (
        "CUDAExecutionProvider",
    )
    for key, value, backend, owner in [
        ("device", "NPU", "litert", "openvino"),
        ("precision", "f16", "litert", "openvino"),
        ("delegate", "libedgetpu.so.1", "openvino", "litert"),
        ("providers", ("CUDAExecutionProvider",), "litert", "onnxruntime"),
        ("device", "GPU", "onnxruntime", "openvino"),
    ]:
        with pytest.raises(OptionError) as info:
            options_for(backend, {key: value})
        message = str(info.value)
        assert f"backend {backend!r} does not take it (only {owner} does)" in message
        assert message.startswith(key) and "\n" not in message


def test_another_backends_options_are_refused_before_loading(tmp_path: Path):
    with pytest.raises(OptionError, match="backend 'litert' takes LiteRTOptions, not OpenVINO"):
        open_backend("litert", tmp_path / "nothing.tflite", OpenVINOOptions(device="NPU"))
    with pytest.raises(OptionError, match="takes OpenVINOOptions, not OnnxRuntimeOptions"):
        Classifier.open(EDGECNN / "int8.xml", "openvino", OnnxRuntimeOptions())


@pytest.mark.parametrize(("file", "backend"), [ARTEFACTS[0], ARTEFACTS[2], ARTEFACTS[5]])
def test_plain_options_suit_every_backend(file: str, backend: str):
    with Classifier.open(EDGECNN / file, backend, BackendOptions(threads=1)) as clf:
        assert clf.classify(_frames()[0]).top.label in LABELS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BackendOptions(threads=-1), r"threads must be 0 \(every core\) to 256, got -1"),
        (lambda: LiteRTOptions(threads=100_000), r"threads must be 0 \(every core\) to 256"),
        (lambda: BackendOptions(threads=True), "threads must be a whole number"),
        (lambda: OpenVINOOptions(precision="int4"), "precision must be f32, f16 or bf16"),
        (lambda: OpenVINOOptions(device=""), "device must name an OpenVINO device"),
        (lambda: OnnxRuntimeOptions(providers=()), "providers must name at least one"),
        (lambda: LiteRTOptions(delegate=""), "delegate must name a library"),
    ],
)
def test_options_are_validated(make: Any, message: str):
    with pytest.raises(OptionError, match=message):
        make()


@pytest.mark.slow
def test_the_bound_on_threads_runs_everywhere():
    """MAX_THREADS itself must work on every backend (100000 crashed LiteRT)."""
    frame = _frames()[0]
    for file, backend in (ARTEFACTS[0], ARTEFACTS[2], ARTEFACTS[5]):
        with Classifier.open(EDGECNN / file, backend, BackendOptions(MAX_THREADS)) as clf:
            assert clf.classify(frame).top.label in LABELS


def test_one_default_for_threads_every_core(monkeypatch: pytest.MonkeyPatch):
    """``Detector.open(path)`` in code gets every core, as the runtime does: LiteRT's
    own default would be one thread."""
    assert thread_count(0) == (os.cpu_count() or 1) and thread_count(3) == 3
    import edge.backends.litert as litert

    real = litert._interpreter_module
    asked: list[int | None] = []

    class Spy:
        def __init__(self, module: Any) -> None:
            self.module = module

        def Interpreter(self, **kwargs: Any) -> Any:
            asked.append(kwargs.get("num_threads"))
            return self.module.Interpreter(**kwargs)

    monkeypatch.setattr(litert, "_interpreter_module", lambda install: Spy(real(install)))
    Detector.open(YOLO / "int8.tflite").close()
    assert asked == [os.cpu_count()]

    with Classifier.open(EDGECNN / "int8.xml", "openvino") as clf:
        compiled = clf.backend._compiled  # type: ignore[attr-defined]
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == os.cpu_count()
    with Classifier.open(EDGECNN / "fp32.onnx", "onnxruntime") as clf:
        session = clf.backend._session  # type: ignore[attr-defined]
        assert session.get_session_options().intra_op_num_threads == os.cpu_count()


# --- LiteRT delegates ----------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("library", "message"),
    [
        ("libedgetpu-not-here.so.1", "delegate 'libedgetpu-not-here.so.1' could not be loaded"),
        ("libc.so.6", "delegate 'libc.so.6' is not a delegate library"),
    ],
)
def test_a_delegate_that_does_not_load_is_one_line(library: str, message: str):
    """And nothing after it: LiteRT's Delegate.__del__ printed a traceback of its own."""
    proc = _python(
        "from pathlib import Path\n"
        "from edge.backends import LiteRTOptions, open_backend\n"
        "from edge.errors import BackendUnavailableError\n"
        "try:\n"
        f"    open_backend('litert', Path({str(EDGECNN / 'int8.tflite')!r}),"
        f" LiteRTOptions(delegate={library!r}))\n"
        "except BackendUnavailableError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    assert message in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


# --- formats, providers, fall-backs -------------------------------------------------------


def test_wrong_format_for_backend():
    with pytest.raises(ModelError, match="backend 'onnxruntime' cannot run a tflite model"):
        Classifier.open(EDGECNN / "int8.tflite", "onnxruntime")


def test_missing_onnx_provider():
    options = OnnxRuntimeOptions(providers=("TensorrtExecutionProvider",))
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider not available"):
        open_backend("onnxruntime", EDGECNN / "fp32.onnx", options)


def _has_device(kind: str) -> bool:
    import openvino as ov

    return any(d.split(".")[0] == kind for d in ov.Core().available_devices)


@pytest.mark.parametrize(
    ("device", "falls_back"),
    [("AUTO:NPU,CPU", True), ("AUTO", False), ("AUTO:CPU", False), ("AUTO:-NPU", False)],
)
def test_openvino_falling_back_to_the_cpu_is_reported(device: str, falls_back: bool):
    """AUTO given an accelerator this machine lacks runs on the CPU without a word from
    OpenVINO: the backend says so (and the device it really runs on)."""
    if _has_device("NPU"):
        pytest.skip("this machine has an NPU: AUTO:NPU,CPU would use it")
    backend = open_backend("openvino", EDGECNN / "int8.xml", OpenVINOOptions(device=device))
    try:
        assert "CPU" in backend.device
        if falls_back:
            assert backend.fallback is not None
            assert "asked for AUTO:NPU,CPU" in backend.fallback and "no NPU" in backend.fallback
        else:
            assert backend.fallback is None
    finally:
        backend.close()


def test_an_onnx_runtime_session_without_a_requested_provider_is_a_fall_back():
    """onnxruntime-gpu on a Jetson whose CUDA libraries do not load drops the CUDA
    provider with only a log line and runs on the CPU: the session it hands back is a
    plain CPU session, as here."""
    import onnxruntime as ort

    from edge.backends.onnxruntime import OnnxRuntimeBackend

    session = ort.InferenceSession(str(EDGECNN / "fp32.onnx"), providers=["CPUExecutionProvider"])
    asked = ("CUDAExecutionProvider", "CPUExecutionProvider")
    backend = OnnxRuntimeBackend(session, asked)
    assert backend.device == "CPUExecutionProvider"
    assert (
        backend.fallback is not None and "CUDAExecutionProvider did not start" in backend.fallback
    )
    assert OnnxRuntimeBackend(session, ("CPUExecutionProvider",)).fallback is None


@pytest.mark.parametrize(
    ("backend", "package"), [("onnxruntime", "onnxruntime"), ("openvino", "openvino")]
)
def test_missing_package_names_the_install_profile(backend: str, package: str):
    # A fresh interpreter in which the package cannot be imported, as on a device without it.
    proc = _python(
        f"import sys; sys.modules[{package!r}] = None\n"
        "from pathlib import Path\n"
        "from edge.backends import open_backend\n"
        f"open_backend({backend!r}, Path({str(EDGECNN / 'fp32.onnx')!r}))\n"
    )
    assert proc.returncode != 0
    assert "capsule-edge[" in proc.stderr and f"backend '{backend}' needs" in proc.stderr
