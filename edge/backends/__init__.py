"""Inference backends: each moves tensors and knows nothing about classes or frames.

Chosen by name from :mod:`edge.backends.registry`; a backend's module is imported only
when it is chosen, so a device needs only the packages of the backends it uses.
"""

from edge.backends.base import Backend, BackendOptions, Quantization, TensorSpec
from edge.backends.registry import BACKENDS, open_backend

__all__ = ["BACKENDS", "Backend", "BackendOptions", "Quantization", "TensorSpec", "open_backend"]
