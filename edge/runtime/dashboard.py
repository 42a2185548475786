"""The live dashboard, served by the HTTP process (``edge.runtime.httpd``), never by the
runtime: ``GET /`` the page, ``/dashboard/state`` what it shows (JSON),
``/dashboard/frame.jpg`` the latest frame, ``/dashboard/events`` the same state as
server-sent events, one each time the runtime publishes (about 4 a second).

The runtime publishes the class scores of the frames committed since its last figures
and the latest frame; the timeline so far is smoothed here, at most every
``SMOOTH_EVERY_S``, in a thread of this (niced) process: whatever it costs is not the
study's time."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from importlib import resources
from typing import Any

import numpy as np
from aiohttp import web

from edge.reading.timeline import build_timeline

SMOOTH_EVERY_S = 2.0
SEGMENTS_SHOWN = 400  # the latest segments; a 12-hour study's strip stays small
MAX_FRAMES = 500_000  # class scores kept for the timeline (12 h at 10 frames/s and more)


class Dashboard:
    def __init__(self) -> None:
        self.labels: list[str] = []
        self._rows: list[list[float]] = []
        self._names: list[str] = []
        self.dropped_rows = 0  # past MAX_FRAMES: the timeline then shows the latest
        self.jpeg: bytes | None = None
        self.reading: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self.timeline: dict[str, Any] = {"segments": [], "landmarks": [], "current": None}
        self._smoothed_at = 0.0
        self._smoothing = False
        self.changed = asyncio.Condition()
        self.version = 0
        self._state: bytes | None = None

    def update(self, doc: dict[str, Any]) -> None:
        """The runtime's figures: the reading part taken out (only the dashboard needs
        the scores and the frame; ``/stats`` stays the figures)."""
        reading = doc.pop("reading", None) or {}
        if reading.get("labels") and reading["labels"] != self.labels:
            self.labels, self._rows, self._names = list(reading["labels"]), [], []
        for session, index, scores in reading.get("new_scores", []):
            if len(scores) == len(self.labels):
                self._rows.append(scores)
                self._names.append(f"{session}:{index}")
        if len(self._rows) > MAX_FRAMES:
            cut = len(self._rows) - MAX_FRAMES
            del self._rows[:cut], self._names[:cut]
            self.dropped_rows += cut
        latest = reading.get("latest")
        if latest and latest.get("jpeg"):
            self.jpeg = base64.b64decode(latest.pop("jpeg"))
        self.reading = {k: v for k, v in reading.items() if k != "new_scores"}
        self.figures = doc
        self._state = None
        self.version += 1

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()
        if not self._smoothing and time.monotonic() - self._smoothed_at >= SMOOTH_EVERY_S:
            self._smoothing = True
            asyncio.get_running_loop().create_task(self._smooth())

    async def _smooth(self) -> None:
        try:
            if self._rows:
                rows, names, labels = list(self._rows), list(self._names), list(self.labels)
                self.timeline = await asyncio.to_thread(_timeline, rows, names, labels)
                self._state = None
        finally:
            self._smoothed_at = time.monotonic()
            self._smoothing = False

    def state(self) -> bytes:
        if self._state is None:
            f = self.figures
            counters = f.get("counters", {})
            link = f.get("link", {})
            self._state = json.dumps(
                {
                    "version": self.version,
                    "at": f.get("at"),
                    "frames": {
                        k: counters.get(k, 0)
                        for k in ("stored", "inferred", "skipped", "duplicates")
                    },
                    "fps_in": f.get("fps_in"),
                    "fps_processed": f.get("fps_processed"),
                    "latency_ms": f.get("latency_ms"),
                    "link": {
                        "connected": link.get("connected"),
                        "ledger": link.get("ledger", {}),
                        "silent_s": link.get("silent_s"),
                    },
                    "latest": self.reading.get("latest"),
                    "alerts": self.reading.get("alerts", []),
                    "events": self.reading.get("events", 0),
                    "labels": self.labels,
                    "timeline": self.timeline,
                    "timeline_frames": len(self._rows),
                }
            ).encode()
        return self._state


def _timeline(rows: list[list[float]], names: list[str], labels: list[str]) -> dict[str, Any]:
    tl = build_timeline(np.asarray(rows, dtype=float), labels)
    segments = [
        {"label": s.label, "first": s.first, "last": s.last} for s in tl.segments[-SEGMENTS_SHOWN:]
    ]
    landmarks = [{"label": m.label, "frame": names[m.position]} for m in tl.landmarks]
    current = tl.segments[-1].label if tl.segments else None
    return {"segments": segments, "landmarks": landmarks, "current": current, "frames": len(rows)}


def add_routes(app: web.Application, board: Dashboard) -> None:
    page = resources.files("edge.runtime").joinpath("static/dashboard.html").read_bytes()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def state(request: web.Request) -> web.Response:
        return web.Response(body=board.state(), content_type="application/json")

    async def frame(request: web.Request) -> web.Response:
        if board.jpeg is None:
            return web.Response(status=404, text="no frame yet\n")
        return web.Response(body=board.jpeg, content_type="image/jpeg")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        seen = -1
        while True:
            if board.version != seen:
                seen = board.version
                await response.write(b"data: " + board.state() + b"\n\n")
            async with board.changed:
                try:
                    await asyncio.wait_for(board.changed.wait(), 15.0)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")  # a proxy keeps the stream

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/state", state)
    app.router.add_get("/dashboard/frame.jpg", frame)
    app.router.add_get("/dashboard/events", events)
