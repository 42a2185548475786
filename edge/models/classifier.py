"""The frame classifier: preprocessing, (de)quantisation and labels over any backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.backends import Backend, BackendOptions
from edge.backends.base import TensorSpec
from edge.errors import ModelError
from edge.models.adapter import ModelAdapter, input_quantization, input_tensor, open_model
from edge.models.card import ModelCard
from edge.models.quant import dequantize
from edge.preprocess import PREPROCESSING_ID, Image, prepare
from edge.types import Classification, ClassScore


class Classifier(ModelAdapter):
    """Classifies RGB uint8 frames of any size. Use :meth:`open` to build one."""

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        if card.task != "classification":
            raise ModelError(f"{card.path}: task is {card.task!r}, not classification")
        if card.preprocessing_id != PREPROCESSING_ID:
            raise ModelError(
                f"{card.path}: preprocessing {card.preprocessing_id!r} is not the runtime's "
                f"{PREPROCESSING_ID!r}"
            )
        self.backend = backend
        self.card = card
        self.labels = card.labels
        self.size = card.input_size
        self._input: TensorSpec = backend.inputs[0]
        self._output: TensorSpec = backend.outputs[0]
        # As for the input (adapter.input_quantization): the card stands in for OpenVINO.
        self._in_quant = input_quantization(self._input, card)
        self._out_quant = self._output.quantization or (
            card.output_quantization if self._output.dtype.kind in "iu" else None
        )
        for spec, quant in ((self._input, self._in_quant), (self._output, self._out_quant)):
            if spec.dtype.kind in "iu" and quant is None:
                raise ModelError(
                    f"{card.path}: integer tensor {spec.name!r} without quantization parameters"
                )
        width = self._output.shape[-1]
        if width not in (-1, len(self.labels)):
            raise ModelError(
                f"{card.path}: model has {width} outputs but the card lists "
                f"{len(self.labels)} labels"
            )

    @classmethod
    def open(
        cls,
        model: str | Path,
        backend: str = "litert",
        options: BackendOptions | None = None,
        *,
        verify: bool = True,
        warm: bool = True,  # one inference on zeros before the first frame
    ) -> Classifier:
        card, runner = open_model(model, backend, options, verify, warm)
        return cls(runner, card)

    def preprocess(self, frame: Image) -> Image:
        return prepare(frame, self.size)

    def to_input(self, batch: np.ndarray) -> np.ndarray:
        """The backend's input tensor for a batch of preprocessed frames."""
        return input_tensor(batch, self._input, self._in_quant)

    def probabilities(self, prepared: Sequence[Image]) -> np.ndarray:
        """Class probabilities, shape (n, classes), for already preprocessed frames."""
        batch = np.stack(prepared)
        out = self.backend.run([self.to_input(batch)])[0]
        if self._out_quant is not None:
            return dequantize(out, self._out_quant)
        return out.astype(np.float32)

    def classify(self, frame: Image) -> Classification:
        return self.classify_batch([frame])[0]

    def classify_batch(self, frames: Sequence[Image]) -> list[Classification]:
        probs = self.probabilities([self.preprocess(f) for f in frames])
        return [self._result(p) for p in probs]

    def _result(self, probs: np.ndarray) -> Classification:
        order = np.argsort(-probs, kind="stable")
        return Classification(
            tuple(ClassScore(self.labels[i], int(i), float(probs[i])) for i in order)
        )
