"""Inference backends: each moves tensors and knows nothing about classes or frames.

Chosen by name from :mod:`edge.backends.registry`; a backend's module is imported only
when it is chosen, so a device needs only the packages of the backends it uses. Each
backend has its own options type (:mod:`edge.backends.options`).
"""

from edge.backends.base import Backend, Quantization, TensorSpec
from edge.backends.options import (
    BackendOptions,
    LiteRTOptions,
    OnnxRuntimeOptions,
    OpenVINOOptions,
    options_for,
    thread_count,
)
from edge.backends.registry import BACKENDS, open_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "LiteRTOptions",
    "OnnxRuntimeOptions",
    "OpenVINOOptions",
    "Quantization",
    "TensorSpec",
    "open_backend",
    "options_for",
    "thread_count",
]
