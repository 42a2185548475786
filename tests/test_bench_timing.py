"""The bench's timing and MAC counting, checked against known times and known graphs
(correctness, not speed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge.bench.timing import summarise, time_calls
from edge.bundled import models_root


class ScriptedClock:
    """A clock that advances by each call's scripted duration: the times are known."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.now = 0
        self.durations = [int(d * 1e6) for d in durations_ms]
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def work(self) -> None:
        self.now += self.durations[self.calls]
        self.calls += 1


def test_first_call_warmup_and_percentiles_from_known_times() -> None:
    # first 50 ms, 3 warm-up calls of 1000 ms (must not count), then 1..100 ms
    clock = ScriptedClock([50.0, 1000.0, 1000.0, 1000.0, *range(1, 101)])
    t = time_calls(clock.work, runs=100, warmup=3, clock=clock)
    assert clock.calls == 104
    assert t.first_ms == 50.0 and t.runs == 100
    assert t.min_ms == 1.0 and t.max_ms == 100.0
    assert t.p50_ms == pytest.approx(50.5) and t.mean_ms == pytest.approx(50.5)
    assert t.p90_ms == pytest.approx(90.1) and t.p99_ms == pytest.approx(99.01)
    assert t.fps == pytest.approx(100 / 5.050)  # 100 calls in 5,050 ms


def test_a_call_with_a_known_sleep_is_measured_within_tolerance() -> None:
    t = time_calls(lambda: time.sleep(0.02), runs=15, warmup=1)
    # a sleep never returns early; a loaded machine may make it late, not by 15 ms at the median
    assert 20.0 <= t.p50_ms < 35.0
    assert t.min_ms >= 20.0 and t.fps <= 1e3 / 20.0


def test_nothing_timed_is_refused() -> None:
    with pytest.raises(ValueError):
        time_calls(lambda: None, runs=0)
    with pytest.raises(ValueError, match="no timed calls"):
        summarise(1, [])


ov = pytest.importorskip("openvino")


def _graph() -> object:
    """A 3x3 convolution 3 -> 8 on 16x16 (stride 1, same padding), a depthwise 3x3 on
    its 8 channels, then a matrix product [1, 2048] x [2048, 10]."""
    from openvino import opset13 as op

    x = op.parameter([1, 3, 16, 16], np.float32)
    w = op.constant(np.ones((8, 3, 3, 3), np.float32))
    conv = op.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1])  # out [1, 8, 16, 16]
    dw = op.constant(np.ones((8, 1, 1, 3, 3), np.float32))
    group = op.group_convolution(conv, dw, [1, 1], [1, 1], [1, 1], [1, 1])
    flat = op.reshape(group, op.constant(np.array([1, 2048], np.int64)), False)
    mm = op.matmul(flat, op.constant(np.ones((2048, 10), np.float32)), False, False)
    return ov.Model([mm], [x])


def test_macs_of_a_known_graph() -> None:
    from edge.bench.macs import count_graph

    conv = 16 * 16 * 8 * (3 * 3 * 3)  # output elements x (Cin x kh x kw)
    depthwise = 16 * 16 * 8 * (1 * 3 * 3)
    matmul = 10 * 2048
    assert count_graph(_graph()) == conv + depthwise + matmul


def test_one_model_has_the_same_macs_in_every_format() -> None:
    from edge.bench.macs import count

    folder = models_root() / "detector" / "yolov5s-256"
    counts = {
        p.name: count(p)
        for p in (folder / "int8.xml", folder / "int8.tflite", folder / "fp32.onnx")
    }
    assert len(set(counts.values())) == 1, counts
    # YOLOv5s is 8.2 GMACs at 640 px (16.5 GFLOPs, yolov5's own figure): x (256/640)^2
    assert counts["fp32.onnx"] == pytest.approx(8.25e9 * (256 / 640) ** 2, rel=0.06)


def test_a_file_openvino_cannot_read_is_one_line(tmp_path: Path) -> None:
    from edge.bench.macs import count
    from edge.errors import ModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx: OpenVINO cannot read it"):
        count(bad)


def test_floor_ratio_is_the_rows_time_over_its_macs_at_its_backends_peak() -> None:
    from edge.bench.floor import Peak, ratio

    peaks = {
        ("litert", "int8", 2): Peak("litert", "int8", 2, gmacs_per_s=500.0, p50_ms=1.0),
        ("openvino", "fp32", 2): Peak("openvino", "fp32", 2, gmacs_per_s=100.0, p50_ms=10.0),
    }
    row = {"backend": "litert", "precision": "int8", "threads": 2, "gmacs": 1.0, "p50_ms": 6.0}
    assert ratio(row, peaks) == 3.0  # 1 GMAC at 500 GMAC/s is 2 ms; 6 ms is 3x that
    torch_row = {
        "backend": "torch",
        "precision": "fp32",
        "threads": 2,
        "gmacs": 1.0,
        "p50_ms": 30.0,
    }
    assert ratio(torch_row, peaks) == 3.0 and torch_row["floor_backend"] == "openvino"
    no_peak = {"backend": "litert", "precision": "fp32", "threads": 1, "gmacs": 1.0, "p50_ms": 1}
    assert ratio(no_peak, peaks) is None


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_each_litert_probe_is_the_product_the_floor_counts(precision: str) -> None:
    """The committed probe computes [2048, 512] x [512, 512]: the MACs the floor divides by."""
    from edge.bench.floor import PROBE_MACS, PROBES
    from edge.bench.macs import count

    assert count(PROBES / f"matmul-{precision}.tflite") == PROBE_MACS
    assert count(PROBES / f"matmul-{precision}.onnx") == PROBE_MACS
