"""The reading aid while a study runs: findings linked into events as frames are
committed (an event confirmed raises an alert, on the dashboard and to the recorder),
and what the dashboard shows, published with the figures.

Fed by the writer thread after each commit, read by the publishing thread; the work
here is small (a few boxes a frame). The timeline so far is smoothed in the HTTP
server's own process (``edge.runtime.dashboard``), from the class scores published
here, so that it costs the study nothing. The live events are for alerts: frames are
taken in index order as they are committed, and one committed after a later one (two
workers, or a frame inferred late) is not linked live; ``capsule-edge report`` links
every frame of the study afterwards."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.reading.events import Detection, Event, EventTracker, TrackerSettings
from edge.study.archive import Reader
from edge.study.errors import CorruptFrameError
from edge.study.store import read_frame
from firmware_bridge.protocol import NO_CLASS, Alert

if TYPE_CHECKING:
    from edge.runtime.writer import Outcome

log = logging.getLogger(__name__)

ALERTS_KEPT = 100  # the dashboard lists the latest alerts; the report has them all
SendAlert = Callable[[int, int, Alert], None]


class LiveReading:
    def __init__(
        self,
        archive: Path,
        labels: Sequence[str],
        box_labels: Sequence[str],
        send_alert: SendAlert,
        *,
        timed: bool = True,
        settings: TrackerSettings | None = None,
    ) -> None:
        self.archive = archive
        self.box_labels = list(box_labels)
        self.send_alert = send_alert
        self.timed = timed  # live: link by the time frames came; a recording: by frames
        self.settings = settings or TrackerSettings()
        self.lock = threading.Lock()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.events = 0
        self.late = 0  # frames committed after a later one: not linked live
        self._trackers: dict[int, EventTracker] = {}
        self._last: dict[int, int] = {}
        self._scores: list[list[Any]] = []  # [session, index, [score per label]] unpublished
        self._labels = list(labels)  # the classifier's classes, in its card's order
        self._latest: dict[str, Any] | None = None
        self._latest_ref: Any = None
        self._published_ref: Any = None
        self._seq = 0
        self._reader: Reader | None = None

    # --- the writer thread -----------------------------------------------------------

    def committed(self, outcomes: Sequence[Outcome]) -> None:
        confirmed: list[tuple[int, int, Event]] = []
        with self.lock:
            for o in sorted(outcomes, key=lambda o: (o.session, o.index)):
                if o.status != "done":
                    continue
                confirmed += self._take(o)
        for session, index, event in confirmed:
            self._alert(session, index, event)

    def _take(self, o: Outcome) -> list[tuple[int, int, Event]]:
        boxes, label, score = [], None, None
        for f in o.findings:
            if f.model == "classifier":
                label, score = f.label, f.score
                if f.scores is not None:
                    got = dict(f.scores)
                    self._scores.append(
                        [o.session, o.index, [round(got.get(k, 0.0), 4) for k in self._labels]]
                    )
            elif f.box is not None:
                boxes.append(f)
        ref = o.ref
        width, height = o.size
        self._seq += 1
        self._latest = {
            "seq": self._seq,
            "frame": f"{o.session}:{o.index}",
            "label": label,
            "score": None if score is None else round(score, 3),
            "width": width,
            "height": height,
            "boxes": [[round(v, 1) for v in b.box] + [round(b.score, 3)] for b in boxes if b.box],
        }
        self._latest_ref = ref
        if o.index <= self._last.get(o.session, -1):
            self.late += 1
            return []
        self._last[o.session] = o.index
        tracker = self._trackers.setdefault(o.session, EventTracker(self.settings))
        features = o.features or (None,) * len(boxes)
        detections = [
            Detection(b.box, b.score, b.label, feat)
            for b, feat in zip(boxes, features, strict=False)
            if b.box is not None
        ]
        if not detections and not (width and height):
            return []  # not an image (nothing to link); its RESULT said so
        when = o.received if self.timed else None
        found = tracker.update(o.index, when, detections, (width, height))
        return [(o.session, o.index, e) for e in found]

    def _alert(self, session: int, index: int, event: Event) -> None:
        self.events += 1
        number = self.events  # numbered across sessions, as the dashboard lists them
        alert = {
            "id": number,
            "kind": event.kind,
            "frame": f"{session}:{index}",
            "first": f"{session}:{event.first}",
            "frames": event.frames,
            "peak_score": round(event.peak_score, 3),
            "max_box_px": list(event.max_box_px),
            "max_box_share": round(event.max_box_share, 4),
            "at": round(time.time(), 3),
        }
        with self.lock:
            self.alerts.append(alert)
        log.info("alert: %s %d confirmed at frame %d:%d", event.kind, number, session, index)
        kind = self.box_labels.index(event.kind) if event.kind in self.box_labels else NO_CLASS
        w, h = event.max_box_px
        self.send_alert(
            session,
            index,
            Alert(
                number, kind, event.first, event.frames, event.peak_score, w, h, event.max_box_share
            ),
        )

    # --- the publishing thread ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What the dashboard needs since the last call: the class scores of the frames
        committed since (the server accumulates them), the latest frame (its bytes only
        when it changed), the alerts."""
        with self.lock:
            scores, self._scores = self._scores, []
            latest = dict(self._latest) if self._latest else None
            ref = self._latest_ref
            alerts = list(self.alerts)
            out = {
                "labels": list(self._labels),
                "new_scores": scores,
                "alerts": alerts,
                "events": self.events,
                "late": self.late,
            }
        if latest is not None and ref is not None and ref is not self._published_ref:
            jpeg = self._read(ref)
            if jpeg is not None:
                latest["jpeg"] = base64.b64encode(jpeg).decode("ascii")
                self._published_ref = ref
        out["latest"] = latest
        return {"reading": out}

    def _read(self, ref: Any) -> bytes | None:
        if self._reader is None:
            self._reader = Reader(self.archive)
        try:
            return read_frame(self._reader, ref)
        except (OSError, CorruptFrameError) as exc:
            log.warning("dashboard: frame %d:%d unreadable: %s", ref.session, ref.index, exc)
            return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
