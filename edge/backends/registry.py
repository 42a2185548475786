"""Backends by name. A backend module is imported only when it is chosen."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edge.backends.base import Backend, BackendOptions, warmup
from edge.errors import BackendUnavailableError


@dataclass(frozen=True)
class BackendInfo:
    module: str
    formats: tuple[str, ...]  # model card formats this backend opens
    install: str  # what brings its package


BACKENDS: dict[str, BackendInfo] = {
    "litert": BackendInfo(
        "edge.backends.litert", ("tflite",), "pip install 'capsule-edge[edge]' (ai-edge-litert)"
    ),
    "openvino": BackendInfo(
        "edge.backends.openvino",
        ("openvino", "tflite", "onnx"),
        "pip install 'capsule-edge[edge]' (openvino)",
    ),
    "onnxruntime": BackendInfo(
        "edge.backends.onnxruntime", ("onnx",), "pip install 'capsule-edge[onnx]' (onnxruntime)"
    ),
}


def open_backend(
    name: str, model_path: Path, options: BackendOptions | None = None, *, warm: bool = True
) -> Backend:
    """Open ``model_path`` with the backend called ``name`` and warm it up."""
    info = BACKENDS.get(name)
    if info is None:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
        )
    module = importlib.import_module(info.module)
    backend: Backend = module.open(model_path, options or BackendOptions(), install=info.install)
    if warm:
        warmup(backend)
    return backend
