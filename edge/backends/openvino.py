"""OpenVINO backend: IR (.xml), .tflite or .onnx on CPU, GPU or NPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Tensor, TensorSpec
from edge.backends.options import OpenVINOOptions
from edge.errors import BackendUnavailableError, ModelError


def _spec(port: Any) -> TensorSpec:
    shape = tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    dtype = np.dtype(port.get_element_type().to_dtype())
    return TensorSpec(port.get_any_name(), shape, dtype, None)


class OpenVINOBackend:
    name = "openvino"

    def __init__(
        self, compiled: Any, requested: str = "CPU", present: Sequence[str] = ("CPU",)
    ) -> None:
        self._compiled = compiled
        try:
            devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        except RuntimeError:
            devices = [requested]
        self.device = ",".join(devices)
        self.fallback = _fallback(requested, devices, present)
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


def open(model_path: Path, options: OpenVINOOptions, *, install: str) -> OpenVINOBackend:
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailableError(f"backend 'openvino' needs OpenVINO: {install}") from None
    core = ov.Core()
    config: dict[str, Any] = {}
    if options.device.split(".")[0] in ("CPU", "GPU"):
        # OpenVINO picks bf16 on CPUs that have it; say what we mean.
        config["INFERENCE_PRECISION_HINT"] = options.precision
    if options.device == "CPU":
        config["INFERENCE_NUM_THREADS"] = options.thread_count
    try:
        # The weights named explicitly: the .bin the card's checksum covered is the one read.
        weights = model_path.with_suffix(".bin")
        if model_path.suffix == ".xml" and weights.is_file():
            model = core.read_model(str(model_path), str(weights))
        else:
            model = core.read_model(str(model_path))
        if any(p.get_partial_shape().is_dynamic for p in model.inputs):
            model.reshape({p.get_any_name(): _static(p) for p in model.inputs})
        compiled = core.compile_model(model, options.device, config)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{model_path}: OpenVINO cannot load it on {options.device} ({first})"
        ) from None
    return OpenVINOBackend(compiled, options.device, list(core.available_devices))


def _fallback(requested: str, devices: Sequence[str], present: Sequence[str]) -> str | None:
    """Why the model runs somewhere other than asked, or None.

    A named accelerator that became the CPU is a fall-back. So is AUTO, MULTI or HETERO
    given a list of accelerators of which this machine has none: OpenVINO then runs on
    the CPU without a word (AUTO:NPU,CPU without an NPU reports "(CPU)"). Whether AUTO
    hands over from the CPU to an accelerator that is present is its own affair: it
    compiles for it in the background, so the CPU alone at start says nothing."""
    kind = requested.split(":")[0].split(".")[0]
    if kind not in ("AUTO", "MULTI", "HETERO"):
        if kind == "CPU" or any(d.strip("()").startswith(kind) for d in devices):
            return None
        return f"OpenVINO was asked for {requested} but runs on {','.join(devices)}"
    entries = requested.partition(":")[2].split(",")
    listed = {d.split(".")[0] for d in entries if d and not d.startswith("-")}  # -X: not X
    accelerators = sorted(listed - {"CPU"})
    kinds_here = {d.split(".")[0] for d in present}
    if not accelerators or kinds_here & set(accelerators):
        return None
    return (
        f"OpenVINO was asked for {requested}, but this machine has no "
        f"{' or '.join(accelerators)} (devices: {', '.join(present)}): "
        f"it runs on {','.join(devices)}"
    )


def _static(port: Any) -> list[int]:
    """Batch 1 for a dynamic batch dimension: the runtime classifies frame by frame."""
    return [1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
