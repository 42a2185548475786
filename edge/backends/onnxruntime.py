"""ONNX Runtime backend; execution providers come from the options."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Tensor, TensorSpec
from edge.backends.options import OnnxRuntimeOptions
from edge.errors import BackendUnavailableError, ModelError

_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ONNX_TYPES.get(arg.type, np.float32)), None)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, session: Any, requested: tuple[str, ...] = ()) -> None:
        self._session = session
        active = list(session.get_providers())
        self.device = active[0] if active else "CPUExecutionProvider"
        # ONNX Runtime drops a provider that fails to initialise with only a log line.
        lost = [p for p in requested if p not in active]
        self.fallback = (
            f"ONNX Runtime provider(s) {', '.join(lost)} did not start: running on {self.device}"
            if lost
            else None
        )
        self._inputs = [_spec(a) for a in session.get_inputs()]
        self._outputs = [_spec(a) for a in session.get_outputs()]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        feed = {spec.name: tensor for spec, tensor in zip(self._inputs, inputs, strict=True)}
        return [np.asarray(o) for o in self._session.run(None, feed)]

    def close(self) -> None:
        self._session = None


def open(model_path: Path, options: OnnxRuntimeOptions, *, install: str) -> OnnxRuntimeBackend:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError(
            f"backend 'onnxruntime' needs ONNX Runtime: {install}"
        ) from None
    available = set(ort.get_available_providers())
    missing = [p for p in options.providers if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"ONNX Runtime provider(s) {', '.join(missing)} not available here "
            f"(available: {', '.join(sorted(available))})"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.thread_count
    try:
        session = ort.InferenceSession(str(model_path), so, providers=list(options.providers))
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{model_path}: ONNX Runtime cannot load it ({first})") from None
    return OnnxRuntimeBackend(session, tuple(options.providers))
