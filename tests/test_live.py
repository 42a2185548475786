"""The live reading aid: LiveReading (fed by the writer thread, linking in its own) and
the dashboard's state in the HTTP process, without a runtime around them."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge.reading.appearance import box_feature
from edge.runtime import dashboard
from edge.runtime.dashboard import Dashboard, add_routes
from edge.runtime.live import LiveReading
from edge.runtime.writer import Outcome
from edge.study.store import Finding
from firmware_bridge.protocol import Alert

LABELS = ("cecum", "polyps")
BOX = (40.0, 40.0, 120.0, 120.0)


def _frame() -> np.ndarray:
    image = np.full((200, 200, 3), (150, 60, 60), np.uint8)
    image[40:120, 40:120] = (230, 180, 120)
    return image


def _outcome(index: int, received: float, box: bool = True) -> Outcome:
    findings = [Finding("classifier", "polyps", 0.9, scores=(("cecum", 0.1), ("polyps", 0.9)))]
    features: tuple = ()
    if box:
        findings.append(Finding("detector", "polyp", 0.8, BOX))
        features = (box_feature(_frame(), BOX, rgb=True),)
    return Outcome(
        7, index, "done", None, 5.0, tuple(findings), received, None, features, (200, 200)
    )


def test_a_frame_inferred_late_does_not_stop_the_alerts(tmp_path: Path):
    """A deferred frame is received (queued) later than the frame after it: its time
    is later though its index is lower. Linking goes on, and the polyp is alerted."""
    sent: list[tuple[int, int, Alert]] = []
    live = LiveReading(tmp_path, LABELS, ["polyp"], lambda *a: sent.append(a), timed=True)
    # each handed over once the one before is linked, as the writer's commits come
    for index, received in ((5, 10.0), (6, 8.0), (4, 9.0), (7, 10.5)):
        live.committed([_outcome(index, received=received)])
        assert live.settled()
    live.close()
    assert live.counts["refused"] == 0 and live.counts["late"] == 1
    assert [(s, i, a.event, a.frames) for s, i, a in sent] == [(7, 7, 1, 3)]
    assert live.events == 1 and live.alerts[0]["frame"] == "7:7"


def test_without_a_dashboard_no_class_scores_pile_up(tmp_path: Path):
    live = LiveReading(tmp_path, LABELS, ["polyp"], lambda *a: None, publish=False)
    live.committed([_outcome(i, float(i), box=False) for i in range(50)])
    live.close()
    assert live.snapshot()["reading"]["new_scores"] == []


def test_the_class_scores_are_published_once_each_in_order(tmp_path: Path):
    live = LiveReading(tmp_path, LABELS, ["polyp"], lambda *a: None)
    live.committed([_outcome(i, float(i), box=False) for i in (2, 0, 1)])
    live.close()
    first = live.snapshot()["reading"]
    assert [r[1] for r in first["new_scores"]] == [0, 1, 2]
    assert first["new_scores"][0][2] == [0.1, 0.9]  # in the card's label order
    assert live.snapshot()["reading"]["new_scores"] == []


def _published(board: Dashboard, rows: list, seq: int, jpeg: bytes | None) -> None:
    latest = {"seq": seq, "frame": f"7:{seq}", "label": "polyps", "score": 0.9}
    latest |= {"width": 200, "height": 200, "boxes": []}
    if jpeg is not None:
        latest["jpeg"] = base64.b64encode(jpeg).decode()
    doc = {"counters": {"stored": seq}, "fps_processed": 9.5, "link": {}}
    doc["reading"] = {"labels": list(LABELS), "new_scores": rows, "latest": latest}
    doc["reading"] |= {"alerts": [], "events": 0}
    board.update(doc)
    assert "reading" not in doc  # /stats keeps the figures only


def test_the_dashboard_keeps_the_scores_and_the_latest_frame():
    board = Dashboard()
    _published(board, [[7, i, [0.2, 0.8]] for i in range(3)], 1, b"\xff\xd8first")
    _published(board, [[7, 3, [0.9, 0.1]], [7, 4, [1, 2, 3]]], 2, None)  # a bad row skipped
    state = json.loads(board.state())
    assert state["timeline_frames"] == 4 and state["frames"]["stored"] == 2
    assert board.jpeg == b"\xff\xd8first"
    timeline = dashboard._timeline(board._rows[: board._used], board._names, board.labels)
    assert timeline["segments"][0]["label"] == "polyps" and timeline["frames"] == 4


def test_event_streams_are_bounded_and_carry_each_update():
    async def scenario() -> None:
        board = Dashboard()
        _published(board, [], 1, b"jpeg")
        app = web.Application()
        add_routes(app, board)
        async with TestClient(TestServer(app)) as client:
            first = await client.get("/dashboard/events")
            assert first.headers["Cache-Control"] == "no-store"
            line = await asyncio.wait_for(first.content.readline(), 5)
            assert json.loads(line.removeprefix(b"data: "))["frames"]["stored"] == 1
            await first.content.readline()  # the blank line after the event
            _published(board, [], 2, None)
            await board.notify()
            line = await asyncio.wait_for(first.content.readline(), 5)
            assert json.loads(line.removeprefix(b"data: "))["frames"]["stored"] == 2
            others = [await client.get("/dashboard/events") for _ in range(dashboard.MAX_STREAMS)]
            assert [r.status for r in others].count(503) == 1  # one over the limit
            for r in [first, *others]:
                r.close()
            frame = await client.get("/dashboard/frame.jpg")
            assert await frame.read() == b"jpeg"

    asyncio.run(scenario())
