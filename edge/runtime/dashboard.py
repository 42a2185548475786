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

SMOOTH_EVERY_S = 2.0  # at most this often, and never more than a tenth of the time
SEGMENTS_SHOWN = 400  # the latest segments; a 12-hour study's strip stays small
MAX_FRAMES = 1_600_000  # class scores kept (float32): 12.7 h at 35 frames/s
MAX_STREAMS = 8  # event streams open at once; more are answered 503
WRITE_TIMEOUT_S = 10.0  # a stream whose reader takes none of it this long is closed


class Dashboard:
    def __init__(self) -> None:
        self.labels: list[str] = []
        self._rows = np.zeros((0, 0), dtype=np.float32)  # grown in blocks: rows used below
        self._used = 0
        self._names: list[str] = []
        self.dropped_rows = 0  # past MAX_FRAMES: the timeline then shows the latest
        self.jpeg: bytes | None = None
        self.reading: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self.timeline: dict[str, Any] = {"segments": [], "landmarks": [], "current": None}
        self._smoothed_at = 0.0
        self._every = SMOOTH_EVERY_S
        self.streams = 0
        self._smoothing = False
        self.changed = asyncio.Condition()
        self.version = 0
        self._state: bytes | None = None

    def update(self, doc: dict[str, Any]) -> None:
        """The runtime's figures: the reading part taken out (only the dashboard needs
        the scores and the frame; ``/stats`` stays the figures)."""
        reading = doc.pop("reading", None) or {}
        if reading.get("labels") and reading["labels"] != self.labels:
            self.labels, self._names, self._used = list(reading["labels"]), [], 0
            self._rows = np.zeros((1024, len(self.labels)), dtype=np.float32)
        new = [r for r in reading.get("new_scores", []) if len(r[2]) == len(self.labels)]
        if new:
            need = self._used + len(new)
            if need > len(self._rows):
                grown = np.zeros((max(need, 2 * len(self._rows)), len(self.labels)), np.float32)
                grown[: self._used] = self._rows[: self._used]
                self._rows = grown
            self._rows[self._used : need] = [r[2] for r in new]
            self._names += [f"{r[0]}:{r[1]}" for r in new]
            self._used = need
        if self._used > MAX_FRAMES:
            cut = self._used - MAX_FRAMES
            self._rows[:MAX_FRAMES] = self._rows[cut : self._used]
            del self._names[:cut]
            self._used = MAX_FRAMES
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
        if not self._smoothing and time.monotonic() - self._smoothed_at >= self._every:
            self._smoothing = True
            asyncio.get_running_loop().create_task(self._smooth())

    async def _smooth(self) -> None:
        started = time.monotonic()
        try:
            if self._used:
                rows = self._rows[: self._used].copy()
                names, labels = list(self._names), list(self.labels)
                self.timeline = await asyncio.to_thread(_timeline, rows, names, labels)
                self._state = None
        except ValueError as exc:  # labels the smoother refuses: no timeline, said once
            if self.timeline.get("error") is None:
                self.timeline = {**self.timeline, "error": str(exc)}
                self._state = None
        finally:
            self._smoothed_at = time.monotonic()
            self._every = max(SMOOTH_EVERY_S, 10 * (self._smoothed_at - started))
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
                    "timeline_frames": self._used,
                }
            ).encode()
        return self._state


def _timeline(rows: np.ndarray, names: list[str], labels: list[str]) -> dict[str, Any]:
    tl = build_timeline(rows.astype(float), labels)
    segments = [
        {"label": s.label, "first": s.first, "last": s.last} for s in tl.segments[-SEGMENTS_SHOWN:]
    ]
    landmarks = [{"label": m.label, "frame": names[m.position]} for m in tl.landmarks]
    current = tl.segments[-1].label if tl.segments else None
    return {"segments": segments, "landmarks": landmarks, "current": current, "frames": len(rows)}


PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}  # a patient's frames


def add_routes(app: web.Application, board: Dashboard) -> None:
    page = resources.files("edge.runtime").joinpath("static/dashboard.html").read_bytes()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=PRIVATE)

    async def state(request: web.Request) -> web.Response:
        return web.Response(body=board.state(), content_type="application/json", headers=PRIVATE)

    async def frame(request: web.Request) -> web.Response:
        if board.jpeg is None:
            return web.Response(status=404, text="no frame yet\n", headers=PRIVATE)
        return web.Response(body=board.jpeg, content_type="image/jpeg", headers=PRIVATE)

    async def events(request: web.Request) -> web.StreamResponse:
        if board.streams >= MAX_STREAMS:
            return web.Response(
                status=503, text="too many event streams\n", headers={"Retry-After": "5"}
            )
        board.streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **PRIVATE})
            await response.prepare(request)
            seen = -1
            while True:
                if board.version != seen:
                    seen = board.version
                    body = b"data: " + board.state() + b"\n\n"
                    await asyncio.wait_for(response.write(body), WRITE_TIMEOUT_S)
                async with board.changed:
                    try:
                        await asyncio.wait_for(board.changed.wait(), 15.0)
                    except asyncio.TimeoutError:
                        await asyncio.wait_for(response.write(b": still here\n\n"), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            return response  # a reader that stopped reading, or went away
        finally:
            board.streams -= 1

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/state", state)
    app.router.add_get("/dashboard/frame.jpg", frame)
    app.router.add_get("/dashboard/events", events)
