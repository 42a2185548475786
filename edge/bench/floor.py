"""This machine's compute floor: the multiply-accumulates per second of a large matrix
product, fp32 and int8, at a given thread count, measured through OpenVINO's CPU plugin.

A model row's floor is its MACs at that rate: the time it could take if every MAC ran at
the speed of the best-case kernel. ``floor_ratio`` (the row's p50 over it) says how far a
model is from what the hardware gives; convolutions on small feature maps never reach a
large GEMM's rate, so 2-5x is good and 20x says the time goes elsewhere.

int8 is a product of FakeQuantized operands, which OpenVINO's low-precision
transformations turn into an integer GEMM (VNNI/AMX on x86, dot-product on Arm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.bench.timing import time_calls
from edge.errors import MissingDependencyError

M = K = N = 1024  # 1.07 GMAC a call: long enough to time, short enough for --quick


@dataclass(frozen=True)
class Peak:
    precision: str
    threads: int
    gmacs_per_s: float
    p50_ms: float


def _matmul(precision: str) -> Any:
    import openvino as ov
    from openvino import opset13 as op

    rng = np.random.default_rng(0)
    a = op.parameter([M, K], np.float32)
    if precision != "int8":
        b = op.constant(rng.uniform(-1, 1, (K, N)).astype(np.float32))
        return ov.Model([op.matmul(a, b, False, False)], [a])
    # NNCF's pattern: activations FakeQuantized to 256 levels, weights int8 constants with
    # a dequantising scale. The low-precision transformations make it an integer GEMM.
    lo, hi = op.constant(np.float32(0.0)), op.constant(np.float32(1.0))
    a_q = op.fake_quantize(a, lo, hi, lo, hi, 256)
    w = op.constant(rng.integers(-127, 128, (N, K), dtype=np.int8))
    w_f = op.multiply(op.convert(w, "f32"), op.constant(np.float32(1 / 127)))
    return ov.Model([op.matmul(a_q, w_f, False, True)], [a])


def measure(precision: str, threads: int, runs: int = 20) -> Peak:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError(
            "the compute floor is measured through OpenVINO (pip install 'capsule-edge[openvino]')"
        ) from None
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(_matmul(precision), "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).uniform(0, 1, (M, K)).astype(np.float32)
    t = time_calls(lambda: request.infer([x]), runs=runs, warmup=3)
    return Peak(precision, threads, M * K * N / (t.p50_ms / 1e3) / 1e9, t.p50_ms)


def ratio(row: dict[str, Any], peaks: dict[tuple[str, int], Peak]) -> float | None:
    """The row's p50 over its floor (its MACs at the peak of its precision and threads)."""
    peak = peaks.get((row.get("precision", ""), int(row.get("threads", 0))))
    if peak is None or "gmacs" not in row or "p50_ms" not in row:
        return None
    floor_ms = row["gmacs"] / peak.gmacs_per_s * 1e3
    return round(float(row["p50_ms"]) / floor_ms, 2) if floor_ms > 0 else None
