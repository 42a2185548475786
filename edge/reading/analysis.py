"""A study read as a reader sees it: the timeline smoothed from every class score, the
detections linked into events, and the figures of the report's JSON twin.

Frames are numbered by their position in the study (0-based; sessions in the order
they came, each by index), the numbers ``first``, ``last`` and ``best`` refer to; each
event also names its best frame as ``session:index``, as ``study export`` does."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadInputError
from edge.frames import decode_image
from edge.reading.appearance import box_feature
from edge.reading.events import Detection, Event, EventTracker, TrackerSettings
from edge.reading.study_data import StudyData, load
from edge.reading.timeline import Timeline, TimelineSettings, build_timeline
from edge.study.archive import Reader
from edge.study.errors import CorruptFrameError

ASSUMED_FPS = 2.0  # a capsule's lowest rate, when the frames carry no capture time
DISCLAIMER = (
    "An aid to reading, not a diagnosis: every finding here is a model's output that a "
    "clinician reviews in the whole study."
)


@dataclass(frozen=True)
class ReadingSettings:
    fps: float | None = None  # the frame rate when the frames carry no capture time
    mm_per_px: float | None = None  # a calibration the user gives; sizes in mm only then
    timeline: TimelineSettings = field(default_factory=TimelineSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)


@dataclass
class Reading:
    data: StudyData
    times_s: np.ndarray
    times_note: str
    timeline: Timeline | None  # None: no frame was classified
    events: list[Event]
    unconfirmed: int
    unreadable: list[str]  # frames with boxes whose bytes could not be read or decoded
    settings: ReadingSettings

    def segment_of(self, position: int) -> int | None:
        """The segment holding a frame (the segments tile the study, in order)."""
        if self.timeline is None or not self.timeline.segments:
            return None
        firsts = [seg.first for seg in self.timeline.segments]
        return max(0, bisect.bisect_right(firsts, position) - 1)

    def as_dict(self) -> dict[str, Any]:
        d = self.data
        timeline = self.timeline.as_dict() if self.timeline else {}
        events = []
        for e in self.events:
            row = e.as_dict()
            row["best_frame"] = d.name(e.best)
            row["best_s"] = round(float(self.times_s[e.best]), 3)
            if self.settings.mm_per_px:
                row["max_box_mm"] = [round(v * self.settings.mm_per_px, 2) for v in e.max_box_px]
            events.append(row)
        segments = timeline.get("segments", [])
        for seg in segments:
            seg["events"], seg["box_frames"] = [], 0
        for e in self.events:
            if (k := self.segment_of(e.best)) is not None:
                segments[k]["events"].append(e.id)
        for p in d.boxes:
            if (k := self.segment_of(p)) is not None:
                segments[k]["box_frames"] += 1
        # every label the study's detectors look for, 0 where none was seen
        by_kind: dict[str, int] = dict.fromkeys(_detected_labels(d), 0)
        for e in self.events:
            by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
        lat = np.array(d.latency_ms) if d.latency_ms else None
        return {
            "study": str(d.folder),
            "disclaimer": DISCLAIMER,
            "frames": d.frames,
            "frames_inferred": int(d.inferred.sum()),
            "frames_with_boxes": len(d.boxes),
            "duration_s": round(float(self.times_s[-1]), 3) if d.frames else 0.0,
            "times": self.times_note,
            "labels": list(d.labels),
            "segments": segments,
            "landmarks": timeline.get("landmarks", []),
            "transit_s": timeline.get("transit_s", {}),
            "prep": timeline.get("prep"),
            "events": events,
            "events_by_kind": by_kind,
            "polyps": by_kind.get("polyp", 0),
            "unconfirmed_tracks": self.unconfirmed,
            "frames_unreadable": self.unreadable,
            "link": {"ledger": d.ledger, "stats": d.link},
            "models": _models(d),
            "latency_ms": (
                {q: round(float(np.percentile(lat, int(q[1:]))), 2) for q in ("p50", "p95", "p99")}
                if lat is not None
                else None
            ),
        }


def read_study(folder: Path, settings: ReadingSettings | None = None) -> Reading:
    """The study at ``folder`` read; a one-line ``StudyError`` when it cannot be opened."""
    settings = settings or ReadingSettings()
    if settings.fps is not None and not (math.isfinite(settings.fps) and settings.fps > 0):
        raise BadInputError(f"--fps {settings.fps}: a frame rate above 0")
    if settings.mm_per_px is not None and not (
        math.isfinite(settings.mm_per_px) and settings.mm_per_px > 0
    ):
        raise BadInputError(f"--mm-per-px {settings.mm_per_px}: a size above 0")
    data = load(folder)
    Reader(folder / "archive").check_key()  # an encrypted study without its key: one line
    times, note = _times(data, settings.fps)
    timeline = None
    if data.frames and len(data.labels) and not np.isnan(data.scores).all():
        timeline = build_timeline(data.scores, data.labels, times, settings=settings.timeline)
    events, unconfirmed, unreadable = _events(
        data, times if data.times_s is not None or settings.fps else None, settings.tracker
    )
    return Reading(data, times, note, timeline, events, unconfirmed, unreadable, settings)


def _times(data: StudyData, fps: float | None) -> tuple[np.ndarray, str]:
    if data.times_s is not None and fps is None:
        return data.times_s, "capture times of the frames"
    rate = fps or ASSUMED_FPS
    times = np.arange(data.frames, dtype=float) / rate
    if fps is not None:
        return times, f"{rate:g} frames/s, as given"
    return times, f"the frames carry no capture time: {rate:g} frames/s assumed (--fps sets it)"


def _events(
    data: StudyData, times: np.ndarray | None, settings: TrackerSettings
) -> tuple[list[Event], int, list[str]]:
    """The detector's boxes linked in frame order. Every inferred frame goes to the
    tracker, those without boxes too (they are how a track learns it missed); a box's
    appearance comes from its decoded frame (only frames with boxes are read)."""
    tracker = EventTracker(settings)
    unreadable: list[str] = []
    size = (1, 1)  # of the last frame read: a frame without boxes is not decoded
    reader = Reader(data.folder / "archive")
    try:
        for p in map(int, np.flatnonzero(data.inferred)):
            ref = data.refs[p]
            if ref.width and ref.height:
                size = (ref.width, ref.height)
            dets: list[Detection] = []
            if p in data.boxes:
                try:
                    rgb = decode_image(data.frame_bytes(reader, p), data.name(p))
                except (CorruptFrameError, BadInputError, OSError) as exc:
                    unreadable.append(f"{data.name(p)}: {exc}")
                    rgb = None
                if rgb is not None:
                    size = (int(rgb.shape[1]), int(rgb.shape[0]))
                for b in data.boxes[p]:
                    feature = box_feature(rgb, b.box, rgb=True) if rgb is not None else None
                    dets.append(Detection(b.box, b.score, b.label, feature))
            tracker.update(p, None if times is None else float(times[p]), dets, size)
    finally:
        reader.close()
    return tracker.finish(), tracker.unconfirmed, unreadable


def _detected_labels(data: StudyData) -> list[str]:
    """The labels of the last run's detectors (every role but the classifier)."""
    if not data.runs:
        return []
    models = data.runs[-1].get("models") or {}
    return [
        str(label)
        for role, m in models.items()
        if role != "classifier" and isinstance(m, dict)
        for label in (m.get("labels") or [])
    ]


def _models(data: StudyData) -> dict[str, Any]:
    """Each role's model of the last run, with the card fields a reader looks at."""
    if not data.runs:
        return {}
    run = data.runs[-1]
    out: dict[str, Any] = {}
    for role, m in run["models"].items():
        card = run["cards"].get(role) or {}
        out[role] = {
            **{k: m.get(k) for k in ("name", "precision", "backend", "device", "sha256")},
            "card": {
                "task": card.get("task"),
                "labels": card.get("labels"),
                "input": (card.get("input") or {}).get("shape"),
                "preprocessing": (card.get("preprocessing") or {}).get("id"),
                "evaluation": _evaluation(card.get("evaluation") or {}),
            }
            if card
            else None,
        }
    return out


def _evaluation(ev: dict[str, Any]) -> dict[str, Any]:
    flat = {**ev, **(ev.get("as_is") or {})}  # a classifier's card nests its figures
    keep = ("split", "frames", "n_images", "accuracy", "macro_f1", "map50", "map50_95")
    return {k: flat[k] for k in keep if k in flat}
