"""Backends by name. A backend module is imported only when it is chosen."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edge.backends.base import Backend, warmup
from edge.backends.options import OPTIONS, BackendOptions, as_options_of
from edge.errors import BackendUnavailableError


@dataclass(frozen=True)
class BackendInfo:
    module: str
    formats: tuple[str, ...]  # model card formats this backend opens
    install: str  # what brings its package
    options: type[BackendOptions]  # the settings it takes


BACKENDS: dict[str, BackendInfo] = {
    "litert": BackendInfo(
        "edge.backends.litert",
        ("tflite",),
        "pip install 'capsule-edge[litert]' (ai-edge-litert)",
        OPTIONS["litert"],
    ),
    "openvino": BackendInfo(
        "edge.backends.openvino",
        ("openvino", "tflite", "onnx"),
        "pip install 'capsule-edge[openvino]' (openvino)",
        OPTIONS["openvino"],
    ),
    "onnxruntime": BackendInfo(
        "edge.backends.onnxruntime",
        ("onnx",),
        "pip install 'capsule-edge[onnx]' (onnxruntime)",
        OPTIONS["onnxruntime"],
    ),
}


def open_backend(
    name: str, model_path: Path, options: BackendOptions | None = None, *, warm: bool = True
) -> Backend:
    """Open ``model_path`` with the backend called ``name`` and warm it up.

    ``options`` are that backend's own type (plain ``BackendOptions``, threads only, suit
    every backend); another backend's options are an ``OptionError`` before anything
    is loaded."""
    info = BACKENDS.get(name)
    if info is None:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
        )
    checked = as_options_of(name, options)
    module = importlib.import_module(info.module)
    backend: Backend = module.open(model_path, checked, install=info.install)
    if warm:
        warmup(backend)
    return backend
