"""The backend interface: tensors in, tensors out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Tensor = npt.NDArray[np.generic]


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension
    dtype: np.dtype[np.generic]
    quantization: Quantization | None = None


@dataclass(frozen=True)
class BackendOptions:
    """What a user may choose about a backend, validated without doing any I/O."""

    threads: int | None = None  # None: the backend's default
    device: str = "CPU"  # OpenVINO device: CPU, GPU, NPU, AUTO...
    precision: str = "f32"  # OpenVINO inference precision hint (it defaults to bf16 on some CPUs)
    delegate: str | None = None  # LiteRT delegate library, e.g. libedgetpu.so.1
    providers: tuple[str, ...] = field(default=("CPUExecutionProvider",))  # ONNX Runtime

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.precision not in ("f32", "f16", "bf16"):
            raise ValueError(f"precision must be f32, f16 or bf16, got {self.precision!r}")
        if not self.providers:
            raise ValueError("providers must name at least one ONNX Runtime provider")


class Backend(Protocol):
    """An opened model. ``run`` takes and returns tensors in the model's own dtypes."""

    name: str
    device: str  # where it really runs, as the library reports it (e.g. "CPU", "GPU.0")
    fallback: str | None  # set when it runs somewhere other than what was asked for

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[TensorSpec]: ...

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]: ...

    def close(self) -> None: ...


def warmup(backend: Backend) -> None:
    """One inference on zeros, so the first real frame does not pay for lazy set-up."""
    zeros = [
        np.zeros(tuple(max(d, 1) for d in spec.shape), dtype=spec.dtype) for spec in backend.inputs
    ]
    backend.run(zeros)
