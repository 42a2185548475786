"""OpenVINO backend: IR (.xml), .tflite or .onnx on CPU, GPU or NPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import BackendOptions, Tensor, TensorSpec
from edge.errors import BackendUnavailableError, ModelError


def _spec(port: Any) -> TensorSpec:
    shape = tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    dtype = np.dtype(port.get_element_type().to_dtype())
    return TensorSpec(port.get_any_name(), shape, dtype, None)


class OpenVINOBackend:
    name = "openvino"

    def __init__(self, compiled: Any, requested: str = "CPU") -> None:
        self._compiled = compiled
        try:
            devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        except RuntimeError:
            devices = [requested]
        self.device = ",".join(devices)
        # AUTO or a device list may choose; a named accelerator that became the CPU is a
        # fall-back the user should hear about.
        wanted = requested.split(":")[0].split(".")[0]
        self.fallback = (
            f"OpenVINO was asked for {requested} but runs on {self.device}"
            if wanted not in ("AUTO", "MULTI", "HETERO", "CPU")
            and not any(d.startswith(wanted) for d in devices)
            else None
        )
        self._request = compiled.create_infer_request()
        self._inputs = [_spec(p) for p in compiled.inputs]
        self._outputs = [_spec(p) for p in compiled.outputs]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        batch = int(inputs[0].shape[0])
        if batch > 1 and self._inputs[0].shape[0] == 1:
            # The model is compiled for one frame at a time: run the batch frame by frame.
            parts = [self._infer([t[i : i + 1] for t in inputs]) for i in range(batch)]
            return [np.concatenate(outs) for outs in zip(*parts, strict=True)]
        return self._infer(inputs)

    def _infer(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        result = self._request.infer(list(inputs))
        return [np.array(result[port]) for port in self._compiled.outputs]

    def close(self) -> None:
        self._request = None
        self._compiled = None


def open(model_path: Path, options: BackendOptions, *, install: str) -> OpenVINOBackend:
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError(f"backend 'openvino' needs OpenVINO: {install}") from None
    core = ov.Core()
    config: dict[str, Any] = {}
    if options.device.split(".")[0] in ("CPU", "GPU"):
        # OpenVINO picks bf16 on CPUs that have it; say what we mean.
        config["INFERENCE_PRECISION_HINT"] = options.precision
    if options.threads and options.device == "CPU":
        config["INFERENCE_NUM_THREADS"] = options.threads
    try:
        model = core.read_model(str(model_path))
        if any(p.get_partial_shape().is_dynamic for p in model.inputs):
            model.reshape({p.get_any_name(): _static(p) for p in model.inputs})
        compiled = core.compile_model(model, options.device, config)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{model_path}: OpenVINO cannot load it on {options.device} ({first})"
        ) from None
    return OpenVINOBackend(compiled, options.device)


def _static(port: Any) -> list[int]:
    """Batch 1 for a dynamic batch dimension: the runtime classifies frame by frame."""
    return [1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
