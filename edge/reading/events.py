"""Findings as events: per-frame detections linked across frames, so that a study counts
polyps, not boxes. One :class:`EventTracker` serves the runtime (``update``, frame by
frame, returns each event the moment it is confirmed: an alert) and the report (every
frame in order, then ``finish``: every event, numbered in order of appearance).

Association is one-to-one per kind (``scipy.optimize.linear_sum_assignment``), so two
polyps in one frame stay two. A track seen in the previous processed frame may take a box
that overlaps its last one (``iou_gate``) or lies within ``max_jump`` of it, if it looks
alike (``max_appearance``). Frames may be sparse (a capsule takes 2-35 frames/s), so a
polyp can move far between two and overlap alone would split it. A track that missed
frames (the polyp left the view, or the detector missed it) may take a box anywhere
within ``max_jump_after_gap``, but only one that looks like it
(``max_appearance_after_gap``, stricter); without appearance there is no such evidence
and the gate stays ``max_jump``. A track ends after ``max_gap_s`` without a box
(``max_gap_frames`` processed frames when frames carry no time), and is an event once it
holds ``confirm_frames`` boxes; one that ends before (an isolated false positive, mostly)
is counted in ``EventTracker.unconfirmed``. Appearance is
:func:`edge.reading.appearance.box_feature`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.reading.appearance import Box, appearance_distance, checked_box

GALLERY = 8  # recent descriptors a track is compared against (the nearest counts)
ASSOCIATIONS = ("appearance", "position", "iou")
_NO = 1e6  # the cost of a pair the gates forbid
_EVENT_KEYS = ("kind", "id", "first", "last", "best", "frames")
_SHARES = ("min_score", "iou_gate", "max_appearance", "max_appearance_after_gap", "min_iou")


@dataclass(frozen=True, eq=False)
class Detection:
    """One box of one frame, in that frame's pixels. ``feature`` is the box's
    :func:`edge.reading.appearance.box_feature`; without it the box is linked by overlap
    and position alone."""

    box: Box
    score: float
    label: str = "polyp"
    feature: np.ndarray | None = None


@dataclass
class Event:
    """One finding followed across frames; positions are the frames' study positions."""

    kind: str
    id: int
    first: int
    last: int
    best: int  # the position of the best-scoring box
    frames: int  # frames with a box
    peak_score: float
    max_box_px: tuple[int, int]  # (w, h) of the largest box
    max_box_share: float  # that box's area / the field of view's area
    boxes: dict[int, Box] = field(repr=False)  # position -> box
    track: int = 0  # the tracker's own number, the same online and in ``finish``

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the boxes."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _EVENT_KEYS}
        out["peak_score"] = round(float(self.peak_score), 4)
        out["max_box_px"] = [int(v) for v in self.max_box_px]
        out["max_box_share"] = round(float(self.max_box_share), 5)
        return out


@dataclass(frozen=True)
class TrackerSettings:
    """How detections become events. Set on simulated sparse studies of real polyps
    (``python -m benchmarks.events``); distances are shares of the frame's diagonal."""

    confirm_frames: int = 3  # boxes a track needs to be an event (at a few frames/s, ~1 s)
    max_gap_s: float = 5.0  # a track survives this long without a box
    max_gap_frames: int = 10  # the same, in processed frames, when frames have no time
    min_score: float = 0.25  # weaker boxes are ignored (the detector's operating point)
    association: str = "appearance"  # or "position" (no appearance), "iou" (overlap only)
    iou_gate: float = 0.3  # a continuing track may take a box overlapping this much
    max_jump: float = 0.35  # centre shift between consecutive frames
    max_jump_after_gap: float = 0.9  # the same after missed frames, with appearance
    max_appearance: float = 0.45  # appearance distance (0-1), consecutive frames
    max_appearance_after_gap: float = 0.3  # the same after missed frames
    max_area_ratio: float = 8.0  # box area change a match may have
    min_iou: float = 0.1  # the "iou" association's gate
    duplicate_overlap: float = 0.7  # a box nested this much in a taken one starts no track

    def __post_init__(self) -> None:
        if self.association not in ASSOCIATIONS:
            raise ValueError(f"association {self.association!r} is not one of {ASSOCIATIONS}")
        for name, value in vars(self).items():
            low = 1 if name in ("confirm_frames", "max_area_ratio") else 0
            high = 1 if name in (*_SHARES, "duplicate_overlap") else math.inf
            if isinstance(value, (int, float)) and not low <= value <= high:
                bounds = f">= {low}" if high == math.inf else f"within {low}-{high}"
                raise ValueError(f"{name} must be {bounds}, got {value}")


def _area(b: Box) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def _inter(a: Box, b: Box) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def iou(a: Box, b: Box) -> float:
    inter = _inter(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    key: int
    kind: str
    first: int
    boxes: dict[int, Box] = field(default_factory=dict)  # the last one only, without history
    features: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=GALLERY))
    frames: int = 0  # frames with a box
    last: int = -1  # the position of the last
    last_time: float | None = None
    misses: int = 0  # processed frames since the last box
    peak_score: float = -1.0
    best: int = 0
    max_area: float = -1.0
    max_box_px: tuple[int, int] = (0, 0)
    max_share: float = 0.0

    @property
    def last_box(self) -> Box:
        return self.boxes[self.last]

    def add(
        self, position: int, time_s: float | None, det: Detection, fov: float, keep: bool
    ) -> None:
        if not keep:
            self.boxes.clear()
        self.boxes[position], self.last_time, self.misses = det.box, time_s, 0
        self.frames, self.last = self.frames + 1, position
        if det.feature is not None:
            self.features.append(det.feature)
        if det.score > self.peak_score:
            self.peak_score, self.best = det.score, position
        x0, y0, x1, y1 = det.box
        if _area(det.box) > self.max_area:
            self.max_area, self.max_share = _area(det.box), _area(det.box) / fov
            self.max_box_px = (round(x1 - x0), round(y1 - y0))

    def event(self, number: int) -> Event:
        return Event(
            self.kind, number, self.first, self.last, self.best, self.frames,
            self.peak_score, self.max_box_px, self.max_share, dict(self.boxes), self.key,
        )  # fmt: skip


class EventTracker:
    """Links detections into events, frame by frame (see the module's docstring).
    ``history=False`` (the runtime's live alerts, for 8-12 hours): a track keeps its last
    box only and an ended one is let go, so memory stays flat however long the study;
    the events it returns are the same, their ``boxes`` the last one, and there is no
    ``finish``."""

    def __init__(
        self, settings: TrackerSettings = TrackerSettings(), *, history: bool = True
    ) -> None:
        self.settings = settings
        self.history = history
        self.unconfirmed = 0  # tracks that ended before confirmation
        self._live: list[_Track] = []
        self._done: list[_Track] = []  # confirmed tracks that ended
        self._confirmed = self._keys = 0
        self._position: int | None = None
        self._time: float | None = None
        self._feature_size: int | None = None
        self._finished: list[Event] | None = None

    def update(
        self,
        position: int,
        time_s: float | None,
        detections: Sequence[Detection],
        frame_size: tuple[int, int],
        *,
        fov_area: float | None = None,
    ) -> list[Event]:
        """Take one frame's detections; return the events this frame confirmed. Call it
        for every frame read, with no detections where there were none: those frames are
        how a track learns it missed (gates after a gap; ``max_gap_frames``).
        ``frame_size`` is (w, h); ``fov_area`` the field of view's area in pixels, where
        it is less than the frame (a capsule's round view), for ``max_box_share``."""
        if self._finished is not None:
            raise ValueError("update after finish: the study is closed")
        diagonal, fov = self._check_frame(position, time_s, frame_size, fov_area)
        checked = [self._check(d, i, position) for i, d in enumerate(detections)]
        self._position, self._time = position, self._time if time_s is None else time_s
        self._expire(time_s)
        kept = [d for d in checked if d.score >= self.settings.min_score]
        confirmed: list[Event] = []
        for kind in sorted({d.label for d in kept} | {t.kind for t in self._live}):
            tracks = [t for t in self._live if t.kind == kind]
            dets = [d for d in kept if d.label == kind]
            pairs = dict(self._assign(tracks, dets, diagonal))  # track -> detection
            for n, track in enumerate(tracks):
                track.misses += n not in pairs
            grown = [(tracks[i], dets[j]) for i, j in pairs.items()]
            taken = [dets[j].box for j in pairs.values()]
            for j, det in enumerate(dets):
                if j not in pairs.values() and not self._duplicate(det.box, taken):
                    self._keys += 1
                    grown.append((_Track(self._keys, kind, position), det))
                    self._live.append(grown[-1][0])
                    taken.append(det.box)
            for track, det in grown:
                track.add(position, time_s, det, fov, self.history)
                if track.frames == self.settings.confirm_frames:
                    self._confirmed += 1
                    confirmed.append(track.event(self._confirmed))
        return confirmed

    def finish(self) -> list[Event]:
        """Close the study: every confirmed event, ordered by first frame, ids 1.. in that
        order (``update`` numbered them in order of confirmation; ``track`` stays)."""
        if not self.history:
            raise ValueError("a tracker without history has no finish (the report's has)")
        if self._finished is None:
            for track in self._live:
                self._close(track)
            self._live = []
            done = sorted(self._done, key=lambda t: (t.first, t.key))
            self._finished = [t.event(n) for n, t in enumerate(done, start=1)]
        return list(self._finished)

    def _assign(
        self, tracks: list[_Track], dets: list[Detection], diagonal: float
    ) -> list[tuple[int, int]]:
        if not tracks or not dets:
            return []
        cost = np.array([[self._cost(t, d, diagonal) for d in dets] for t in tracks])
        rows, cols = linear_sum_assignment(cost)
        return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if cost[i, j] < _NO]

    def _cost(self, track: _Track, det: Detection, diagonal: float) -> float:
        s, last = self.settings, track.last_box
        overlap = iou(last, det.box)
        if s.association == "iou":
            return 1.0 - overlap if overlap >= s.min_iou else _NO
        ratio = max(_area(last), _area(det.box)) / max(min(_area(last), _area(det.box)), 1e-6)
        if ratio > s.max_area_ratio:
            return _NO
        continuing = track.misses == 0
        appearance: float | None = None
        if s.association == "appearance" and det.feature is not None and track.features:
            appearance = min(appearance_distance(f, det.feature) for f in track.features)
        app_gate = s.max_appearance if continuing else s.max_appearance_after_gap
        if appearance is not None and appearance > app_gate:
            return _NO
        dx = (det.box[0] + det.box[2] - last[0] - last[2]) / 2
        dy = (det.box[1] + det.box[3] - last[1] - last[3]) / 2
        jump = math.hypot(dx, dy) / diagonal
        gate = s.max_jump if continuing or appearance is None else s.max_jump_after_gap
        if jump > gate and not (continuing and overlap >= s.iou_gate):
            return _NO
        cost = (1.0 - overlap) + min(jump / max(gate, 1e-6), 1.0)
        cost += 0.5 * math.log(ratio) / math.log(max(s.max_area_ratio, 1.0 + 1e-6))
        if appearance is not None:
            cost += 1.5 * appearance / max(app_gate, 1e-6)
        return cost

    def _duplicate(self, box: Box, taken: list[Box]) -> bool:
        """Whether ``box`` and a box already taken in this frame are mostly one inside
        the other: a part and the whole of one finding, as detectors give them."""
        limit = self.settings.duplicate_overlap
        return any(_inter(box, o) >= limit * min(_area(box), _area(o)) > 0 for o in taken)

    def _expire(self, time_s: float | None) -> None:
        s, alive = self.settings, []
        for t in self._live:
            gap = None if time_s is None or t.last_time is None else time_s - t.last_time
            if t.misses > s.max_gap_frames if gap is None else gap > s.max_gap_s:
                self._close(t)
            else:
                alive.append(t)
        self._live = alive

    def _close(self, track: _Track) -> None:
        if track.frames < self.settings.confirm_frames:
            self.unconfirmed += 1
        elif self.history:
            self._done.append(track)

    def _check_frame(
        self, position: int, time_s: float | None, size: tuple[int, int], fov: float | None
    ) -> tuple[float, float]:
        """The frame's diagonal and field-of-view area, or a ValueError."""
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise ValueError(f"position must be an integer, got {position!r}")
        if self._position is not None and position <= self._position:
            raise ValueError(f"position {position} does not follow position {self._position}")
        earliest = -math.inf if self._time is None else self._time
        if time_s is not None and not (math.isfinite(time_s) and time_s >= earliest):
            raise ValueError(
                f"position {position}: time {time_s} s is not finite or before {earliest} s"
            )
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
            raise ValueError(f"position {position}: frame_size {size} is not (w, h) > 0")
        area = float(size[0] * size[1]) if fov is None else float(fov)
        if not (math.isfinite(area) and area > 0):
            raise ValueError(f"position {position}: fov_area {fov} is not a positive area")
        return math.hypot(size[0], size[1]), area

    def _check(self, det: Detection, index: int, position: int) -> Detection:
        where = f"position {position}, detection {index}"
        box = checked_box(det.box, where)
        if not (math.isfinite(det.score) and 0 <= det.score <= 1):
            raise ValueError(f"{where}: score {det.score} is not within 0-1")
        if not det.label:
            raise ValueError(f"{where}: no label")
        feature = det.feature
        if feature is not None:
            if feature.ndim != 1 or not np.isfinite(feature).all():
                raise ValueError(f"{where}: feature is not a finite 1-d descriptor")
            size = self._feature_size = self._feature_size or feature.size
            if feature.size != size:
                raise ValueError(f"{where}: feature has {feature.size} values, not {size}")
        return Detection(box, float(det.score), det.label, feature)
