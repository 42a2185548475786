"""``GET /stats`` (JSON) and ``GET /metrics`` (Prometheus text) of a running study.

Served from a daemon thread on 127.0.0.1 by default: the figures are about a patient's
study, so another machine sees them only when the operator says so.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.errors import BadInputError

Snapshot = Callable[[], dict[str, Any]]


def prometheus(stats: dict[str, Any]) -> str:
    """The /stats figures as Prometheus text exposition (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP capsule_edge_{name} {doc}")
        lines.append(f"# TYPE capsule_edge_{name} {kind}")
        lines.extend(f"capsule_edge_{name}{labels} {value:g}" for labels, value in samples)

    counters = stats.get("counters", {})
    metric(
        "frames_total",
        "counter",
        "Frames by what happened to them.",
        [
            (f'{{state="{state}"}}', float(counters.get(state, 0)))
            for state in ("stored", "inferred", "skipped", "undecodable", "duplicates")
        ],
    )
    metric(
        "fps",
        "gauge",
        "Frames per second over the last 5 s.",
        [('{stage="in"}', stats["fps_in"]), ('{stage="processed"}', stats["fps_processed"])],
    )
    latency = [
        (f'{{quantile="0.{q[1:]}"}}', float(v))
        for q, v in stats.get("latency_ms", {}).items()
        if v is not None
    ]
    metric("latency_ms", "gauge", "Frame fully received to findings stored, recent.", latency)
    stage_samples = [
        (f'{{stage="{name}",quantile="0.{q[1:]}"}}', float(v))
        for name, qs in stats.get("stage_ms", {}).items()
        for q, v in qs.items()
        if v is not None
    ]
    metric("stage_ms", "gauge", "Per-stage time (decode, each model), recent.", stage_samples)
    metric(
        "queue_depth",
        "gauge",
        "Frames waiting in each queue.",
        [(f'{{queue="{k}"}}', float(v)) for k, v in stats.get("gauges", {}).items()],
    )
    link = stats.get("link", {})
    ledger = link.get("ledger", {})
    metric(
        "ledger_frames",
        "gauge",
        "Frame indices by ledger outcome (this run).",
        [(f'{{outcome="{_escape(k)}"}}', float(v)) for k, v in sorted(ledger.items())],
    )
    link_counters = link.get("link", {})
    metric(
        "link_events_total",
        "counter",
        "Link protocol events (messages, errors, resends).",
        [(f'{{event="{_escape(k)}"}}', float(v)) for k, v in sorted(link_counters.items())],
    )
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class StatsServer:
    def __init__(self, snapshot: Snapshot, address: str = "127.0.0.1", port: int = 8321) -> None:
        self.snapshot = snapshot
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/stats":
                    body = json.dumps(outer.snapshot(), indent=1).encode()
                    kind = "application/json"
                elif path == "/metrics":
                    body = prometheus(outer.snapshot()).encode()
                    kind = "text/plain; version=0.0.4"
                else:
                    self.send_error(404, "try /stats or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the status line is the log

        try:
            self.server = ThreadingHTTPServer((address, port), Handler)
        except OSError as exc:
            raise BadInputError(
                f"[http] {address}:{port}: cannot listen ({exc.strerror or exc}); "
                "choose another [http] port or disable [http]"
            ) from None
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://{address}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
