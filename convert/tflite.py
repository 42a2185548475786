"""LiteRT (.tflite) export shared by the classifier and the detector conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tflite(saved_model: Path, calib: np.ndarray, out: Path) -> None:
    """``out/fp32.tflite`` and full-integer ``out/int8.tflite`` (int8 in and out, every
    op int8) of a SavedModel, calibrated on ``calib`` (N, H, W, 3) float frames."""
    import tensorflow as tf

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
    (out / "int8.tflite").write_bytes(converter.convert())
