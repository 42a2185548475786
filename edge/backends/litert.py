"""LiteRT (TensorFlow Lite) backend, with an optional delegate such as an Edge TPU."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Quantization, Tensor, TensorSpec
from edge.backends.options import LiteRTOptions
from edge.errors import BackendUnavailableError, ModelError


def _interpreter_module(install: str) -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:  # the older standalone runtime, where only that is installed
            from tflite_runtime import interpreter
        except ImportError:
            raise BackendUnavailableError(f"backend 'litert' needs LiteRT: {install}") from None
    return interpreter


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quant = Quantization(float(scale), int(zero_point)) if scale else None
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]), quant)


class LiteRTBackend:
    name = "litert"

    def __init__(self, interpreter: Any, device: str = "CPU", fallback: str | None = None) -> None:
        self._interpreter = interpreter
        self.device = device
        self.fallback = fallback
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        self._inputs = [_spec(d) for d in self._in]
        self._outputs = [_spec(d) for d in self._out]
        self._batch = 1

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        batch = int(inputs[0].shape[0])
        if batch != self._batch:
            for detail, tensor in zip(self._in, inputs, strict=True):
                self._interpreter.resize_tensor_input(detail["index"], tensor.shape)
            self._interpreter.allocate_tensors()
            self._batch = batch
        for detail, tensor in zip(self._in, inputs, strict=True):
            self._interpreter.set_tensor(detail["index"], tensor)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(d["index"]).copy() for d in self._out]

    def close(self) -> None:
        self._interpreter = None


def _load_delegate(interpreter_module: Any, library: str) -> Any:
    """The delegate in ``library``, or ``BackendUnavailableError``.

    The library is opened with ctypes first: LiteRT's own ``Delegate`` leaves a half-built
    object behind when the library is missing or is not a delegate, and its ``__del__``
    then prints a traceback of its own after our message."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        raise BackendUnavailableError(
            f"LiteRT delegate {library!r} could not be loaded: {exc}"
        ) from None
    missing = [s for s in _DELEGATE_SYMBOLS if not hasattr(lib, s)]
    if missing:
        raise BackendUnavailableError(
            f"LiteRT delegate {library!r} is not a delegate library (no {', '.join(missing)})"
        )
    try:
        return interpreter_module.load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailableError(
            f"LiteRT delegate {library!r} could not be loaded: {reason}"
        ) from None


_DELEGATE_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


def open(model_path: Path, options: LiteRTOptions, *, install: str) -> LiteRTBackend:
    interpreter_module = _interpreter_module(install)
    threads = options.thread_count
    delegates = [_load_delegate(interpreter_module, options.delegate)] if options.delegate else []
    try:
        interpreter = interpreter_module.Interpreter(
            model_path=str(model_path),
            num_threads=threads,
            experimental_delegates=delegates or None,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{model_path}: LiteRT cannot load it ({first})") from None
    if not options.delegate:
        return LiteRTBackend(interpreter)
    # A delegate that loads may still take no part of the graph (an Edge TPU with a
    # model not compiled for it): the plan then looks as it does without the delegate.
    plain = interpreter_module.Interpreter(model_path=str(model_path), num_threads=threads)
    plain.allocate_tensors()
    took_nothing = _plan(interpreter) == _plan(plain)
    fallback = (
        f"LiteRT delegate {options.delegate!r} took no operation of the model: it runs on the CPU"
        if took_nothing
        else None
    )
    device = "CPU" if took_nothing else f"CPU+{Path(options.delegate).name}"
    return LiteRTBackend(interpreter, device, fallback)


def _plan(interpreter: Any) -> list[str]:
    return [op["op_name"] for op in interpreter._get_ops_details()]
