"""Timing one call the way every row is timed: the first call alone, warm-up calls
dropped, then each timed call on its own (batch 1, one after another).

The clock is a parameter so that the arithmetic is tested against known times; the
wall clock is ``time.perf_counter_ns``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Clock = Callable[[], int]  # nanoseconds


@dataclass(frozen=True)
class Timing:
    first_ms: float  # the first call: lazy allocation, kernel selection, caches
    runs: int  # timed calls, after the warm-up
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    fps: float  # timed calls per second of the timed loop, one at a time

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def summarise(first_ns: int, samples_ns: list[int]) -> Timing:
    if not samples_ns:
        raise ValueError("no timed calls")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return Timing(
        first_ms=first_ns / 1e6,
        runs=len(samples_ns),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        fps=1e3 * len(samples_ns) / float(ms.sum()) if ms.sum() > 0 else float("inf"),
    )


def time_calls(
    call: Callable[[], object],
    runs: int,
    warmup: int = 10,
    clock: Clock = time.perf_counter_ns,
    progress: Callable[[int], None] | None = None,
) -> Timing:
    """Time ``call``: once alone (``first_ms``), ``warmup`` times untimed, ``runs`` times
    timed. ``progress`` hears each timed call's number."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs {runs} (at least 1), warmup {warmup} (at least 0)")
    start = clock()
    call()
    first = clock() - start
    for _ in range(warmup):
        call()
    samples = []
    for i in range(runs):
        start = clock()
        call()
        samples.append(clock() - start)
        if progress is not None:
            progress(i + 1)
    return summarise(first, samples)
