"""The reading aid while a study runs: findings linked into events as frames are
committed (an event confirmed raises an alert, on the dashboard and to the recorder),
and what the dashboard shows, published with the figures.

The writer thread only hands each commit's outcomes over (a bounded queue: the writer
gates frames and acknowledgements and must never wait here); a thread of its own links
them, and the publishing thread reads the result. The timeline so far is smoothed in
the HTTP server's own process (``edge.runtime.dashboard``), from the class scores
published here, so that it costs the study nothing. Live events are for alerts: frames
are linked in index order as they are committed, and one committed after a later one
(two workers, a frame inferred late) is not linked live; ``capsule-edge report`` links
every frame of the study afterwards. Nothing here can stop the study: a frame the
tracker refuses is counted and passed over."""

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
QUEUED = 4096  # outcomes waiting to be linked; past it the oldest are let go (counted)
SCORES_KEPT = 20_000  # class scores not yet published (the server is gone or starved)
SCORES_PER_SNAPSHOT = 2_000  # a publication stays small; the rest goes next time
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
        publish: bool = True,
        settings: TrackerSettings | None = None,
    ) -> None:
        self.archive = archive
        self.box_labels = list(box_labels)
        self.send_alert = send_alert
        self.timed = timed  # live: link by the time frames came; a recording: by frames
        self.publish = publish  # a dashboard takes the class scores and the frame
        self.settings = settings or TrackerSettings()
        self.lock = threading.Lock()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.counts = {"events": 0, "late": 0, "refused": 0, "let_go": 0, "scores_let_go": 0}
        self._queue: deque[Outcome] = deque()
        self._wake = threading.Condition()
        self._linking = False  # a batch taken from the queue and not yet linked
        self._closing = False
        self._trackers: dict[int, EventTracker] = {}
        self._last: dict[int, tuple[int, float]] = {}  # session -> last index, time linked
        self._scores: deque[list[Any]] = deque(maxlen=SCORES_KEPT)
        self._labels = list(labels)  # the classifier's classes, in its card's order
        self._latest: dict[str, Any] | None = None
        self._latest_ref: Any = None
        self._published: tuple[Any, dict[str, Any]] | None = None  # ref, latest shown
        self._seq = 0
        self._reader: Reader | None = None
        self._thread = threading.Thread(target=self._loop, name="live-events", daemon=True)
        self._thread.start()

    @property
    def events(self) -> int:
        return self.counts["events"]

    # --- the writer thread: hand over, never wait -----------------------------------

    def committed(self, outcomes: Sequence[Outcome]) -> None:
        with self._wake:
            for o in outcomes:
                if len(self._queue) >= QUEUED:
                    self._queue.popleft()
                    self.counts["let_go"] += 1
                self._queue.append(o)
            self._wake.notify()

    # --- the linking thread -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                batch = sorted(self._queue, key=lambda o: (o.session, o.index))
                self._queue.clear()
                self._linking = True
            try:
                going_on = self._link(batch)
            finally:
                with self._wake:
                    self._linking = False
                    self._wake.notify_all()
            if not going_on:
                return

    def settled(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over is linked (or ``timeout``); True if it is."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._queue and not self._linking, timeout)

    def _link(self, batch: list[Outcome]) -> bool:
        """Link a batch in frame order; False when a bug stops live alerts."""
        for o in batch:
            if o.status != "done":
                continue
            try:
                found = self._take(o)
            except ValueError as exc:  # a frame the tracker cannot take: passed over
                self.counts["refused"] += 1
                log.debug("live events: frame %d:%d passed over: %s", o.session, o.index, exc)
                continue
            except Exception:  # a bug: live alerts stop, the study goes on
                log.exception("live events stopped; the study goes on (the report links)")
                return False
            for event in found:
                self._alert(o.session, o.index, event)
        return True

    def _take(self, o: Outcome) -> list[Event]:
        boxes, label, score = [], None, None
        for f in o.findings:
            if f.model == "classifier":
                label, score = f.label, f.score
                if f.scores is not None and self.publish:
                    got = dict(f.scores)
                    row = [o.session, o.index, [round(got.get(k, 0.0), 4) for k in self._labels]]
                    with self.lock:
                        if len(self._scores) == self._scores.maxlen:
                            self.counts["scores_let_go"] += 1
                        self._scores.append(row)
            elif f.box is not None:
                boxes.append(f)
        width, height = o.size
        last_index, last_time = self._last.get(o.session, (-1, -1.0))
        if o.index <= last_index:
            self.counts["late"] += 1
            return []
        with self.lock:
            self._seq += 1
            self._latest = {
                "seq": self._seq,
                "frame": f"{o.session}:{o.index}",
                "label": label,
                "score": None if score is None else round(score, 3),
                "width": width,
                "height": height,
                "boxes": [
                    [*(round(v, 1) for v in b.box), round(b.score, 3), b.label]
                    for b in boxes
                    if b.box is not None
                ],
            }
            self._latest_ref = o.ref
        # A frame deferred and inferred late was received before the frames around it
        # were: its time never goes back (the tracker wants times in order).
        when = max(o.received, last_time) if self.timed else None
        self._last[o.session] = (o.index, when if when is not None else -1.0)
        if not (width and height):
            return []
        tracker = self._trackers.get(o.session)
        if tracker is None:  # for alerts: no history kept, flat over a 12-hour study
            tracker = self._trackers[o.session] = EventTracker(self.settings, history=False)
        features = o.features or (None,) * len(boxes)
        detections = [
            Detection(b.box, b.score, b.label, feat)
            for b, feat in zip(boxes, features, strict=False)
            if b.box is not None
        ]
        return tracker.update(o.index, when, detections, (width, height))

    def _alert(self, session: int, index: int, event: Event) -> None:
        with self.lock:
            self.counts["events"] += 1
            number = self.counts["events"]  # this run's, across sessions
            self.alerts.append(
                {
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
            )
        log.info("alert: %s %d confirmed at frame %d:%d", event.kind, number, session, index)
        kind = self.box_labels.index(event.kind) if event.kind in self.box_labels else NO_CLASS
        w, h = event.max_box_px
        share = event.max_box_share
        self.send_alert(
            session,
            index,
            Alert(number, kind, event.first, event.frames, event.peak_score, w, h, share),
        )

    # --- the publishing thread ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What the dashboard needs since the last call: the class scores of the frames
        linked since (the server accumulates them; at most SCORES_PER_SNAPSHOT a time),
        the latest frame (its bytes only when it changed), the alerts."""
        with self.lock:
            n = min(len(self._scores), SCORES_PER_SNAPSHOT)
            scores = [self._scores.popleft() for _ in range(n)]
            latest = dict(self._latest) if self._latest else None
            ref = self._latest_ref
            out: dict[str, Any] = {
                "labels": list(self._labels),
                "new_scores": scores,
                "alerts": list(self.alerts),
                **self.counts,
            }
        if (
            latest is not None
            and ref is not None
            and (self._published is None or ref is not self._published[0])
        ):
            jpeg = self._read(ref)
            if jpeg is not None:
                latest["jpeg"] = base64.b64encode(jpeg).decode("ascii")
                self._published = (ref, {k: v for k, v in latest.items() if k != "jpeg"})
            else:  # the boxes stay with the frame they belong to
                latest = self._published[1] if self._published else None
        elif self._published is not None:
            latest = self._published[1]
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
        """Link what is queued, then stop (the summary counts the alerts)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=10)
        if self._reader is not None:
            self._reader.close()
