"""Multiply-accumulates of a model, counted from its graph.

OpenVINO reads every format the project ships (IR, ONNX, LiteRT), so one counter serves
each row: the MACs of its convolutions and matrix products, from their static shapes.
Element-wise work (activations, additions, resizes) is left out: it is memory-bound, and
the floor this count feeds (``floor_ratio``) is about arithmetic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edge.errors import MissingDependencyError, ModelError


def _shape(output: Any) -> list[int]:
    shape = output.get_partial_shape()
    if shape.is_dynamic:
        raise ModelError(f"{output.get_node().get_friendly_name()}: dynamic shape {shape}")
    return [int(d) for d in shape.to_shape()]


def count_graph(model: Any) -> int:
    """MACs of one inference of an ``openvino.Model`` (batch as its inputs say)."""
    total = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Convolution":  # weights [Cout, Cin, *kernel]
            weights = _shape(op.input_value(1))
            total += math.prod(_shape(op.output(0))) * math.prod(weights[1:])
        elif kind == "GroupConvolution":  # weights [G, Cout/G, Cin/G, *kernel]
            weights = _shape(op.input_value(1))
            total += math.prod(_shape(op.output(0))) * math.prod(weights[2:])
        elif kind == "MatMul":  # each output element is a dot product of length K
            a = _shape(op.input_value(0))
            transpose_a = bool(op.get_attributes().get("transpose_a", False))
            k = a[-2] if transpose_a and len(a) > 1 else a[-1]
            total += math.prod(_shape(op.output(0))) * k
    return total


def count(path: Path) -> int:
    """MACs of the model file at ``path`` (.xml, .onnx or .tflite)."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError(
            "counting a model's MACs needs OpenVINO (pip install 'capsule-edge[openvino]')"
        ) from None
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as exc:
        raise ModelError(f"{path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from None
    if any(i.get_partial_shape().is_dynamic for i in model.inputs):  # a LiteRT batch of -1
        model.reshape(
            {
                i: [d.get_length() if d.is_static else 1 for d in i.get_partial_shape()]
                for i in model.inputs
            }
        )
    return count_graph(model)
