"""The bench's floor probes: one large matrix product per format and precision, so that
``capsule-edge bench`` measures each backend's peak through the backend itself.

    python -m convert.bench_probes [OUT]    (the convert profile; default edge/bench/probes)

[M, K] x [K, N] with M = 2048, K = N = 512 (0.54 GMAC a call): for LiteRT a fully
connected layer, fp32 and int8 (full-integer quantisation, as the bundled models are); for
ONNX Runtime a MatMul, fp32 and QDQ int8 (quantise, dequantise, MatMul, which ONNX Runtime
runs as an integer product). Seeded weights; the files are committed, ~2.6 MB in all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

M, K, N = 2048, 512, 512
OUT = Path(__file__).resolve().parents[1] / "edge" / "bench" / "probes"


def _weights() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (K, N)).astype(np.float32)


def litert(out: Path) -> None:
    import tensorflow as tf

    w = tf.constant(_weights())

    def matmul(x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, w)

    product = tf.function(matmul, input_signature=[tf.TensorSpec([M, K], tf.float32)])

    concrete = [product.get_concrete_function()]
    (out / "matmul-fp32.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_concrete_functions(concrete, product).convert()
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(concrete, product)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: (
        [rng.uniform(0, 1, (M, K)).astype(np.float32)] for _ in range(4)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (out / "matmul-int8.tflite").write_bytes(converter.convert())


def onnx_models(out: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _weights()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])
    fp32 = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [x],
        [y],
        [numpy_helper.from_array(w, "w")],
    )
    opset = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(fp32, opset_imports=opset), str(out / "matmul-fp32.onnx"))
    scale = np.float32(np.abs(w).max() / 127)
    wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    inits = [
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(np.array(scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    qdq = helper.make_graph(nodes, "matmul_qdq", [x], [y], inits)
    onnx.save(helper.make_model(qdq, opset_imports=opset), str(out / "matmul-int8.onnx"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    out.mkdir(parents=True, exist_ok=True)
    litert(out)
    onnx_models(out)
    for path in sorted(out.iterdir()):
        print(f"{path} {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
