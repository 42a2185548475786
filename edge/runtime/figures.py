"""The figures the HTTP process serves: the latest the runtime published, and their
``/stats`` (JSON) and ``/metrics`` (Prometheus) bodies, each rendered at most once per
figures so that a flood costs a lookup and a write per request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge.runtime.stats import DETECTION_BOXES, DETECTION_FRAMES, by_role

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FRAME_STATES = ("stored", "inferred", "skipped", "undecodable", "duplicates", "inference_errors")


class Figures:
    """The latest published figures and their two bodies, rendered on first use."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self._stats: bytes | None = None
        self._metrics: bytes | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.renders = 0  # how many bodies were rendered: at most two per figures

    def update(self, doc: dict[str, Any]) -> None:
        self.doc, self._stats, self._metrics = doc, None, None

    def stats(self) -> bytes:
        if self._stats is None:
            self._stats = json.dumps(self.doc, indent=1).encode()
            self.renders += 1
        return self._stats

    def metrics(self) -> bytes:
        if self._metrics is None:
            self._metrics = generate_latest(self.registry)
            self.renders += 1
        return self._metrics


class _Collector:
    """The figures as Prometheus metrics; the names are those of the hand-written
    exposition this replaced."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        doc = self.figures.doc
        if doc is None:
            return
        counters = doc.get("counters", {})
        frames = CounterMetricFamily(
            "capsule_edge_frames", "Frames by what happened to them.", labels=["state"]
        )
        for state in FRAME_STATES:
            frames.add_metric([state], float(counters.get(state, 0)))
        yield frames
        for name, prefix, what in (
            ("capsule_edge_detection_frames", DETECTION_FRAMES, "Frames with a box"),
            ("capsule_edge_detection_boxes", DETECTION_BOXES, "Boxes found"),
        ):
            family = CounterMetricFamily(name, f"{what}, by detector (its role).", labels=["model"])
            for role, n in sorted(by_role(counters, prefix).items()):
                family.add_metric([role], float(n))
            yield family
        fps = GaugeMetricFamily(
            "capsule_edge_fps", "Frames per second over the last 5 s.", labels=["stage"]
        )
        fps.add_metric(["in"], float(doc.get("fps_in", 0.0)))
        fps.add_metric(["processed"], float(doc.get("fps_processed", 0.0)))
        yield fps
        latency = GaugeMetricFamily(
            "capsule_edge_latency_ms",
            "Frame fully received to findings stored, recent.",
            labels=["quantile"],
        )
        for q, v in doc.get("latency_ms", {}).items():
            if v is not None:
                latency.add_metric([_quantile(q)], float(v))
        yield latency
        stages = GaugeMetricFamily(
            "capsule_edge_stage_ms",
            "Per-stage time (decode, each model), recent.",
            labels=["stage", "quantile"],
        )
        for name, qs in doc.get("stage_ms", {}).items():
            for q, v in qs.items():
                if v is not None:
                    stages.add_metric([name, _quantile(q)], float(v))
        yield stages
        queues = GaugeMetricFamily(
            "capsule_edge_queue_depth", "Frames waiting in each queue.", labels=["queue"]
        )
        for name, v in doc.get("gauges", {}).items():
            queues.add_metric([name], float(v))
        yield queues
        link = doc.get("link", {})
        ledger = GaugeMetricFamily(
            "capsule_edge_ledger_frames",
            "Frame indices by ledger outcome (this run).",
            labels=["outcome"],
        )
        for name, v in sorted(link.get("ledger", {}).items()):
            ledger.add_metric([name], float(v))
        yield ledger
        events = CounterMetricFamily(
            "capsule_edge_link_events",
            "Link protocol events (messages, errors, resends).",
            labels=["event"],
        )
        for name, v in sorted(link.get("link", {}).items()):
            events.add_metric([name], float(v))
        yield events
        uptime = GaugeMetricFamily("capsule_edge_uptime_seconds", "Seconds since the run began.")
        uptime.add_metric([], float(doc.get("uptime_s", 0.0)))
        yield uptime
        at = GaugeMetricFamily(
            "capsule_edge_figures_timestamp_seconds",
            "When the runtime published these figures (Unix time): stale when it stops.",
        )
        at.add_metric([], float(doc.get("at", 0.0)))
        yield at


def _quantile(name: str) -> str:
    return f"0.{name[1:]}" if name.startswith("p") else name  # p50 -> 0.50, p95 -> 0.95
