"""The backend interface: tensors in, tensors out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.backends.options import BackendOptions

Tensor = npt.NDArray[np.generic]

__all__ = ["Backend", "BackendOptions", "Quantization", "Tensor", "TensorSpec", "warmup"]


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
