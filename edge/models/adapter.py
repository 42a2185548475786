"""What every model adapter (classifier, detector) shares: opening a model file on a
backend through its card, and closing it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np

from edge.backends import Backend, BackendOptions, open_backend
from edge.backends.base import Quantization, TensorSpec
from edge.backends.registry import BACKENDS
from edge.errors import ModelError
from edge.models.card import ModelCard, load_card
from edge.models.quant import quantize, quantize_pixels

A = TypeVar("A", bound="ModelAdapter")


def open_model(
    model: str | Path, backend: str, options: BackendOptions | None, verify: bool, warm: bool = True
) -> tuple[ModelCard, Backend]:
    """The model's card (sha256-checked when ``verify``) and a backend running it."""
    card = load_card(model)
    allowed = BACKENDS[backend].formats if backend in BACKENDS else ()
    if allowed and card.format not in allowed:
        raise ModelError(
            f"{card.model_path}: backend {backend!r} cannot run a {card.format} model "
            f"(it runs {', '.join(allowed)})"
        )
    if verify:
        card.verify()
    return card, open_backend(backend, card.model_path, options, warm=warm)


def input_quantization(spec: TensorSpec, card: ModelCard) -> Quantization | None:
    """The input's quantisation: LiteRT reports it itself; OpenVINO running a .tflite
    does not, so the card's figures stand in."""
    if spec.quantization is not None:
        return spec.quantization
    return card.input_quantization if spec.dtype.kind in "iu" else None


def input_tensor(batch: np.ndarray, spec: TensorSpec, quant: Quantization | None) -> np.ndarray:
    """A batch of frames (float or uint8, 0-255) as the backend's input tensor."""
    if quant is not None:
        if batch.dtype == np.uint8:
            return quantize_pixels(batch, quant, spec.dtype)
        return quantize(batch.astype(np.float32), quant, spec.dtype)
    return batch.astype(spec.dtype)


class ModelAdapter:
    backend: Backend

    def close(self) -> None:
        self.backend.close()

    def __enter__(self: A) -> A:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
