"""Counters and latency distributions of a run, in constant memory, for the status line,
``/stats``, ``/metrics`` and the summary.

A whole-run latency distribution is a histogram of 1,000 log-spaced bins from 10 µs to
1,000 s (each bin 1.9 % wide), so a 12-hour study costs the same 8 kB as a minute;
live figures come from the last ``RECENT`` values.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

RECENT = 2048
_LOW_MS, _HIGH_MS, _BINS = 0.01, 1e6, 1000
_STEP = math.log(_HIGH_MS / _LOW_MS) / _BINS


class Distribution:
    def __init__(self) -> None:
        self.counts = np.zeros(_BINS + 2, np.int64)  # under, bins..., over
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.total = 0

    def add(self, ms: float) -> None:
        if ms < _LOW_MS:
            slot = 0
        elif ms >= _HIGH_MS:
            slot = _BINS + 1
        else:
            slot = 1 + int(math.log(ms / _LOW_MS) / _STEP)
        self.counts[slot] += 1
        self.recent.append(ms)
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """The whole run's ``q``-th percentile (the geometric middle of its bin)."""
        if not self.total:
            return None
        rank = q / 100 * (self.total - 1)
        slot = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if slot == 0:
            return _LOW_MS
        if slot > _BINS:
            return _HIGH_MS
        return _LOW_MS * math.exp((slot - 0.5) * _STEP)

    def recent_percentile(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.recent, float), q)) if self.recent else None

    def summary(self) -> dict[str, float | None]:
        return {f"p{q}": _round(self.percentile(q)) for q in (50, 95, 99)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Rate:
    """Events per second over the last ``window`` seconds, from counts recorded as they
    change (not when someone asks), so there is a figure from the second batch of events.

    Kept: the (time, count) of changes at least ``resolution`` apart, with one anchor at
    or before the window's start, and the latest change. The rate is the count between
    the anchor and the latest change over the time between them: before a window has
    passed the anchor is the first event, so 159 frames stored in the first two seconds
    read about 80/s, not 0. Once nothing has changed for ``hold`` seconds the time runs
    to now instead, so a stalled stream reads falling, and 0 once a window has passed."""

    def __init__(self, window: float = 5.0, resolution: float = 0.05, hold: float = 1.0) -> None:
        self.window = window
        self.resolution = resolution
        self.hold = hold
        self.samples: deque[tuple[float, int]] = deque()
        self.last: tuple[float, int] | None = None

    def record(self, now: float, count: int) -> None:
        self.last = (now, count)
        if not self.samples or now - self.samples[-1][0] >= self.resolution:
            self.samples.append((now, count))
        self._trim(now)

    def value(self, now: float) -> float:
        if self.last is None:
            return 0.0
        self._trim(now)
        t_last, c_last = self.last
        t0, c0 = self.samples[0]
        end = t_last if now - t_last <= self.hold else now
        return (c_last - c0) / (end - t0) if end > t0 else 0.0

    def _trim(self, now: float) -> None:
        start = now - self.window
        while len(self.samples) > 1 and self.samples[1][0] <= start:
            self.samples.popleft()


class _Counters(Counter[str]):
    """A Counter that tells each rate when its count changes, however it is changed
    (``count()``, or ``counters[name] += n`` under the lock)."""

    def __init__(self, rates: dict[str, Rate], clock: Callable[[], float]) -> None:
        super().__init__()
        self._rates = rates
        self._clock = clock

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        rate = self._rates.get(key)
        if rate is not None:
            rate.record(self._clock(), value)


# Counters of each detector's frames with at least one box, and of its boxes, by role:
# "detection_frames:detector", "detection_boxes:detector.bleeding".
DETECTION_FRAMES = "detection_frames:"
DETECTION_BOXES = "detection_boxes:"


def by_role(counters: dict[str, int], prefix: str) -> dict[str, int]:
    """``{role: n}`` of the counters named ``prefix + role``."""
    return {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix)}


class Stats:
    """Shared by the receiving and inference threads; every change under one lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        # "stored" is the rate in, "inferred" the rate processed.
        self._rates = {"stored": Rate(), "inferred": Rate()}
        self.counters: Counter[str] = _Counters(self._rates, clock)
        self.latency = Distribution()  # frame fully received -> findings stored
        self.stages: dict[str, Distribution] = {}
        self.started = clock()
        self.latest_class: tuple[str, float] | None = None
        self.gauges: dict[str, float] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def stage(self, name: str, ms: float) -> None:
        with self.lock:
            self.stages.setdefault(name, Distribution()).add(ms)

    def rates(self) -> dict[str, float]:
        with self.lock:
            now = self.clock()
            return {
                "in": self._rates["stored"].value(now),
                "processed": self._rates["inferred"].value(now),
            }

    def snapshot(self) -> dict[str, Any]:
        """The live figures, as plain JSON-able values. The lock is held only to copy
        them: the percentiles are computed after, so a reader costs the threads that
        count next to nothing."""
        with self.lock:
            now = self.clock()
            fps_in = self._rates["stored"].value(now)
            fps_processed = self._rates["inferred"].value(now)
            counters = dict(self.counters)
            latency = list(self.latency.recent)
            stages = {name: list(d.recent) for name, d in self.stages.items()}
            gauges = dict(self.gauges)
            latest = self.latest_class
        return {
            "uptime_s": round(now - self.started, 1),
            "fps_in": round(fps_in, 2),
            "fps_processed": round(fps_processed, 2),
            "counters": counters,
            "latency_ms": _p50_p95(latency),
            "stage_ms": {name: _p50_p95(values) for name, values in stages.items()},
            "gauges": gauges,
            "latest_class": latest,
        }


def _p50_p95(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return {"p50": _round(float(p50)), "p95": _round(float(p95))}
