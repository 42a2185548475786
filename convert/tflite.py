"""LiteRT (.tflite) export shared by the classifier and the detector conversions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RANGES = ("minmax", "mean")


def write_tflite(
    saved_model: Path, calib: np.ndarray, out: Path, *, ranges: str = "minmax"
) -> None:
    """``out/fp32.tflite`` and full-integer ``out/int8.tflite`` (int8 in and out, every
    op int8) of a SavedModel, calibrated on ``calib`` (N, H, W, 3) float frames.

    ``ranges`` says how each activation's int8 range comes from the calibration frames:
    ``minmax`` is LiteRT's own (the extremes over all frames); ``mean`` is the mean of
    each frame's extremes, OpenVINO/NNCF's default, so that one outlier frame does not
    coarsen a tensor's int8 step for every frame. Measured on the YOLOv5s epoch-55
    checkpoint: box parity with fp32 0.944 -> 0.952, mAP@0.5 0.818 -> 0.813 (fp32 0.824).
    """
    import tensorflow as tf

    if ranges not in RANGES:
        raise ValueError(f"ranges must be one of {', '.join(RANGES)}, got {ranges!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    (out / "fp32.tflite").write_bytes(converter.convert())

    def representative():  # type: ignore[no-untyped-def]
        for frame in calib:
            yield [frame[None]]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if ranges == "minmax":
        (out / "int8.tflite").write_bytes(converter.convert())
        return
    # Calibrate only, set the ranges, then quantise: the two steps LiteRT's converter
    # does in one (and the path tf.lite.experimental.QuantizationDebugger takes).
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = _mean_ranges(converter.convert(), calib)
    (out / "int8.tflite").write_bytes(
        tflite_convert.mlir_quantize(
            calibrated,
            fully_quantize=True,
            input_data_type=tf.int8,
            output_data_type=tf.int8,
        )
    )


def _mean_ranges(calibrated: bytes, calib: np.ndarray) -> bytes:
    """The calibrated float model with each activation's min/max replaced by the mean
    over ``calib`` of that activation's per-frame min/max (the input keeps its range)."""
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    model: Any = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    # Every intermediate tensor, computed by the built-in kernels: a delegate would
    # keep the ones inside it to itself.
    interpreter = tf.lite.Interpreter(
        model_content=calibrated,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    image = interpreter.get_input_details()[0]["index"]
    ranged = [
        i
        for i, t in enumerate(tensors)
        if i != image
        and t.quantization is not None
        and t.quantization.min is not None
        and len(t.quantization.min) == 1
    ]
    lows = np.zeros((len(calib), len(ranged)))
    highs = np.zeros((len(calib), len(ranged)))
    for n, frame in enumerate(calib):
        interpreter.set_tensor(image, frame[None].astype(np.float32))
        interpreter.invoke()
        for k, i in enumerate(ranged):
            values = interpreter.get_tensor(i)
            lows[n, k], highs[n, k] = values.min(), values.max()
    for k, i in enumerate(ranged):
        q = tensors[i].quantization
        q.min, q.max = [float(lows[:, k].mean())], [float(highs[:, k].mean())]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
