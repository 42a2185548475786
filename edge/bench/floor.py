"""This machine's compute floor: the multiply-accumulates per second of a large matrix
product, fp32 and int8, at a given thread count, measured through each backend itself:
OpenVINO's CPU plugin on a graph built here, LiteRT and ONNX Runtime on the probes in
``probes/`` (``convert.bench_probes`` makes them).

A model row's floor is its MACs at that rate: the time it could take if every MAC ran at
the speed of the best-case kernel. ``floor_ratio`` (the row's p50 over it) says how far a
model is from what the hardware gives; convolutions on small feature maps never reach a
large GEMM's rate, so 2-5x is good and 20x says the time goes elsewhere.

For OpenVINO, int8 is a product of FakeQuantized activations and int8 weights, which its
low-precision transformations turn into an integer GEMM (VNNI/AMX on x86, dot-product on
Arm); LiteRT's probe is a fully-quantised fully-connected layer (XNNPACK), ONNX Runtime's
a QDQ MatMul. A row without a peak of its own backend (the PyTorch reference) is held
against OpenVINO's, and says so (``floor_backend``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bench.timing import time_calls
from edge.errors import MissingDependencyError

M = K = N = 1024  # OpenVINO's: 1.07 GMAC a call, long enough to time, short for --quick
PROBES = Path(__file__).parent / "probes"
PROBE_MACS = 2048 * 512 * 512  # convert.bench_probes' M x K x N
PROBE_FORMAT = {"litert": "tflite", "onnxruntime": "onnx"}


@dataclass(frozen=True)
class Peak:
    backend: str
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


def measure(backend: str, precision: str, threads: int, runs: int = 20) -> Peak:
    if backend == "openvino":
        return _openvino(precision, threads, runs)
    from edge.backends import BackendOptions, open_backend

    probe = PROBES / f"matmul-{precision}.{PROBE_FORMAT[backend]}"
    runner = open_backend(backend, probe, BackendOptions(threads=threads))
    try:
        spec = runner.inputs[0]
        rng = np.random.default_rng(1)
        if spec.dtype.kind in "iu":  # an int8 probe's quantised input: any byte will do
            x = rng.integers(0, 256, spec.shape, dtype=np.uint8).view(spec.dtype)
        else:
            x = rng.uniform(0, 1, spec.shape).astype(spec.dtype)
        t = time_calls(lambda: runner.run([x]), runs=runs, warmup=3)
    finally:
        runner.close()
    return Peak(backend, precision, threads, PROBE_MACS / (t.p50_ms / 1e3) / 1e9, t.p50_ms)


def _openvino(precision: str, threads: int, runs: int) -> Peak:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError(
            "OpenVINO's floor needs openvino (pip install 'capsule-edge[openvino]')"
        ) from None
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(_matmul(precision), "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).uniform(0, 1, (M, K)).astype(np.float32)
    t = time_calls(lambda: request.infer([x]), runs=runs, warmup=3)
    return Peak("openvino", precision, threads, M * K * N / (t.p50_ms / 1e3) / 1e9, t.p50_ms)


def ratio(row: dict[str, Any], peaks: dict[tuple[str, str, int], Peak]) -> float | None:
    """The row's p50 over its floor (its MACs at the peak of its backend, precision and
    threads; OpenVINO's where its backend has none, noted in the row)."""
    key = (row.get("backend", ""), row.get("precision", ""), int(row.get("threads", 0)))
    peak = peaks.get(key)
    if peak is None and (fallback := peaks.get(("openvino", *key[1:]))) is not None:
        peak = fallback
        row["floor_backend"] = "openvino"
    if peak is None or "gmacs" not in row or "p50_ms" not in row:
        return None
    floor_ms = row["gmacs"] / peak.gmacs_per_s * 1e3
    return round(float(row["p50_ms"]) / floor_ms, 2) if floor_ms > 0 else None
