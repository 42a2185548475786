"""A study's timeline: per-frame class scores smoothed into segments, the capsule's
passage past ordered landmarks, transit times and a bowel-preparation summary.

Emissions are the frames' log-probabilities floored at ``floor`` (0.01): one frame says
at most ``log(1/floor)`` = 4.6 nats however sure the classifier is. A frame whose scores
are all NaN (never scored) is uninformative: the same emission for every state, so it
takes its neighbours' label.

**Segments** come from a sticky Viterbi: keeping the label is free, a change costs
``switch_penalty`` nats; nothing is merged afterwards. The minimum duration sets the
penalty: a segment inside another label pays two changes, so with ``penalty = min_frames
* log(confident_odds) / 2`` a segment whose frames favour it at ``confident_odds`` to 1
survives exactly when it is longer than ``min_frames``; shorter ones survive only with
more confident frames, longer ones are absorbed only with less. ``min_frames`` is
``min_segment_s`` in frames at the median interval, rounded (else ``min_segment_frames``).
No inner run shorter than ``min_frames * log(confident_odds) / log(1/floor)`` frames
ever survives: with the defaults at 2 frames/s, none of 3 frames or fewer.

**Landmarks** come from a left-to-right Viterbi over the passage sites the labels hold,
in anatomical order (esophagus, z-line, stomach, pylorus, small bowel, ileocecal valve,
cecum, colon), with an unlabelled region wherever two landmarks or an end would touch.
It runs over the smoothed segments, each with its mean scores times its scored frames,
so a landmark begins and ends where the sticky decoding put a boundary. A landmark
explains its own score; a region its own plus that of every label naming no site (a
polyp or prep frame fits any region, no landmark). Sites may be skipped; entering a
landmark costs ``landmark_min_llr`` nats (by default two switch penalties: the evidence
of a minimum-duration segment), so a landmark is reported only when its run beats the
path that skips it by that much, and is otherwise not seen. Its ``position`` is the
first frame of its run, its ``score`` the label's mean score over the run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NEG = -np.inf
# (site, is a landmark) in the order a capsule passes them.
PASSAGE: tuple[tuple[str, bool], ...] = (("esophagus", False), ("z-line", True))
PASSAGE += (("stomach", False), ("pylorus", True), ("small-bowel", False))
PASSAGE += (("ileocecal-valve", True), ("cecum", True), ("colon", False))
ALIASES = {"oesophagus": "esophagus", "zline": "z-line", "small-intestine": "small-bowel"}
ALIASES |= {"caecum": "cecum", "ileocaecal-valve": "ileocecal-valve", "large-bowel": "colon"}
ALIASES |= {"ileo-cecal-valve": "ileocecal-valve", "large-intestine": "colon"}
COLON_ENTRY = ("cecum", "ileocecal-valve", "colon")  # the first of these seen
TRANSITS = ("gastric", "small_bowel", "colonic")


def normalise_label(name: str) -> str:
    """``'Normal_Z line'`` -> ``'z-line'``: lowercase, ``_`` and spaces as ``-``, no
    ``normal-`` prefix, the spellings in ``ALIASES`` folded."""
    key = re.sub(r"[\s_-]+", "-", name.strip().lower()).removeprefix("normal-")
    return ALIASES.get(key, key)


@dataclass(frozen=True)
class TimelineSettings:
    min_segment_s: float = 3.0
    min_segment_frames: int = 5  # when the frames have no times
    confident_odds: float = 20.0  # a typical confident frame: its label 20:1 over another
    switch_penalty: float | None = None  # nats; None: from the minimum duration
    landmark_min_llr: float | None = None  # nats; None: two switch penalties
    floor: float = 0.01
    frame_interval_s: float | None = None  # spacing of frames given without times

    def __post_init__(self) -> None:
        ok = {"min_segment_s": self.min_segment_s >= 0, "floor": 0 < self.floor < 1}
        ok |= {"min_segment_frames": self.min_segment_frames >= 1}
        ok |= {"confident_odds": self.confident_odds > 1}
        for name in ("switch_penalty", "landmark_min_llr", "frame_interval_s"):
            value = getattr(self, name)
            ok[name] = value is None or (value > 0 if name == "frame_interval_s" else value >= 0)
        for name in (name for name, good in ok.items() if not good):
            raise ValueError(f"TimelineSettings.{name} = {getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class Segment:
    label: str
    first: int  # 0-based positions in the sequence, inclusive
    last: int
    start_s: float  # times of frames first and last
    end_s: float


@dataclass(frozen=True)
class Landmark:
    label: str
    position: int  # first frame of the landmark's run
    time_s: float
    score: float  # mean score of the label over the run
    last: int = -1  # last frame of the run
    end_s: float = 0.0


@dataclass
class Timeline:
    labels: tuple[str, ...]
    path: np.ndarray  # smoothed label index per frame
    segments: list[Segment]
    landmarks: list[Landmark]  # in passage order
    transit_s: dict[str, float | None]  # gastric, small_bowel, colonic
    prep: dict[str, Any] | None  # None when the labels hold no prep classes
    timed: bool = True  # False: no times were given, the *_s fields count frames
    smoothing: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"labels": list(self.labels), "frames": len(self.path), "timed": self.timed}
        out |= {"smoothing": self.smoothing, "segments": [asdict(s) for s in self.segments]}
        out |= {"landmarks": [asdict(m) for m in self.landmarks], "transit_s": dict(self.transit_s)}
        return out | {"prep": self.prep}


def build_timeline(
    scores: npt.ArrayLike,
    labels: Sequence[str],
    times_s: npt.ArrayLike | None = None,
    *,
    settings: TimelineSettings = TimelineSettings(),
) -> Timeline:
    """Smooth ``scores`` (frames x labels, probabilities) into a :class:`Timeline`.

    ``times_s``: each frame's time, not decreasing; without it frames are
    ``frame_interval_s`` apart when that is set, else the times count frames and the
    transit times are None. Bad input raises a one-line ``ValueError``."""
    p, keys, times, timed = _checked(scores, labels, times_s, settings)
    n, k = p.shape
    blank = np.isnan(p).all(axis=1)
    step = float(np.median(np.diff(times))) if n > 1 else 0.0
    min_frames = settings.min_segment_frames
    if timed and step > 0:
        min_frames = max(1, round(settings.min_segment_s / step))
    penalty = settings.switch_penalty
    if penalty is None:  # a segment of min_frames confident frames pays for its two changes
        penalty = 0.5 * min_frames * math.log(settings.confident_odds)
    llr = settings.landmark_min_llr if settings.landmark_min_llr is not None else 2 * penalty
    logp = np.log(np.maximum(np.where(blank[:, None], 1.0 / k, p), settings.floor))
    path = sticky_path(logp, penalty)
    cuts = np.flatnonzero(np.diff(path)) + 1
    firsts, lasts = np.r_[0, cuts], np.r_[cuts - 1, n - 1]
    segments = [
        Segment(labels[path[a]], int(a), int(b), float(times[a]), float(times[b]))
        for a, b in zip(firsts, lasts, strict=True)
    ]
    marks = _passage(p, blank, keys, labels, times, (firsts, lasts), llr, settings.floor)
    landmarks, entries = marks
    colon = next(((s, entries[s]) for s in COLON_ENTRY if s in entries), None)
    transit = _transit(entries, colon, times) if timed else dict.fromkeys(TRANSITS)
    smoothing = dict(min_segment_frames=min_frames, switch_penalty=penalty, landmark_min_llr=llr)
    prep = _prep(path, keys, labels, colon)
    return Timeline(tuple(labels), path, segments, landmarks, transit, prep, timed, smoothing)


def sticky_path(logp: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The Viterbi path over ``logp`` (frames x states) where a change of state costs
    ``switch_penalty`` and staying nothing."""
    zeros = np.zeros(logp.shape[1])

    def into(delta: np.ndarray) -> np.ndarray:
        out: np.ndarray = (delta.max(axis=1, keepdims=True) - switch_penalty) + zeros
        return out

    if switch_penalty == 0:
        out: np.ndarray = np.argmax(logp, axis=1)
        return out
    return _decode(logp, zeros, into, lambda row, j: int(np.argmax(row)))


def monotone_path(logp: np.ndarray, entry_cost: np.ndarray) -> np.ndarray:
    """The Viterbi path over ``logp`` that never goes back to a lower state; it may skip
    states, and entering state j (also at the first frame) costs ``entry_cost[j]``."""

    def into(delta: np.ndarray) -> np.ndarray:
        out = np.full(delta.shape, NEG)
        out[:, 1:] = np.maximum.accumulate(delta, axis=1)[:, :-1] - entry_cost[1:]
        return out

    return _decode(logp, -entry_cost, into, lambda row, j: int(np.argmax(row[:j])))


def _decode(
    logp: np.ndarray,
    prior: np.ndarray,
    into: Callable[[np.ndarray], np.ndarray],
    pick: Callable[[np.ndarray, int], int],
) -> np.ndarray:
    """Viterbi where a state is kept for free or entered from its best allowed predecessor:
    ``into(delta)`` gives each state's score if entered at the next frame, ``pick`` that
    predecessor. A state's path score at t is ``cum[t] + best[t]``: ``cum`` the summed
    emissions, ``best`` a running maximum over entry frames s <= t of (entry score at s -
    ``cum[s-1]``), vectorised over frames. Entry scores depend on earlier path scores, so a
    window of frames iterates up from -inf to the fixed point: each round fixes one more
    frame at least, two or three the whole window on smoothed data (then it widens);
    where the path changes every few frames, frames go one by one."""
    n, k = logp.shape
    cum = np.cumsum(logp, axis=0)
    before = np.vstack([np.zeros((1, k)), cum[:-1]])
    best = np.empty_like(cum)
    a, width = 0, 256
    rest = prior[None]  # entry scores of the next frames: the first final, then lower bounds
    while a < n:
        m = min(width, n - a)
        entry = np.vstack([rest[:m], np.full((m - len(rest[:m]), k), NEG)])
        b = a + m
        carry = best[a - 1 : a] if a else np.full((1, k), NEG)
        for rounds in range(1, 5):  # noqa: B007 (read after the loop)
            run = np.maximum.accumulate(np.vstack([carry, entry - before[a:b]]), axis=0)[1:]
            new = into(cum[a : b - 1] + run[:-1])
            moved = np.flatnonzero((new != entry[1:]).any(axis=1))
            fixed = int(moved[0]) + 1 if moved.size else m  # rows of run now final
            entry[1:] = new
            if fixed == m:
                break
        best[a : a + fixed] = run[:fixed]
        a, rest = a + fixed, entry[fixed:]
        width = min(4096, 2 * width) if rounds <= 3 else max(16, min(width, 4 * fixed))
        if width == 16 and fixed < 8 < len(rest):  # a change every few frames: per frame
            row = best[a - 1]
            for t in range(a, min(n, a + 512)):
                best[t] = row = np.maximum(row, into((cum[t - 1] + row)[None])[0] - before[t])
            a, rest = min(n, a + 512), rest[:0]
        if a < n and not len(rest):
            rest = into(cum[a - 1 : a] + best[a - 1 : a])
    # Back from the end, a segment at a time: state j was last entered at the latest
    # frame where its running maximum grew.
    grew = np.ones((n, k), dtype=bool)
    grew[1:] = best[1:] > best[:-1]
    entered = [np.flatnonzero(grew[:, j]) for j in range(k)]
    path = np.empty(n, dtype=np.intp)
    t, j = n - 1, int(np.argmax(cum[-1] + best[-1]))
    while True:
        s = int(entered[j][np.searchsorted(entered[j], t, side="right") - 1])
        path[s : t + 1] = j
        if s == 0:
            return path
        j, t = pick(cum[s - 1] + best[s - 1], j), s - 1


def _checked(
    scores: npt.ArrayLike,
    labels: Sequence[str],
    times_s: npt.ArrayLike | None,
    settings: TimelineSettings,
) -> tuple[np.ndarray, list[str], np.ndarray, bool]:
    p = np.asarray(scores, dtype=np.float64)
    if p.ndim != 2 or not len(p):
        raise ValueError(f"scores must be frames x labels with a frame or more, not {p.shape}")
    n, k = p.shape
    if isinstance(labels, str) or len(labels) != k:
        raise ValueError(f"{len(labels)} labels for {k} score columns")
    keys = [normalise_label(str(label)) for label in labels]
    if k == 0 or len(set(keys)) != k:
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"labels must be distinct, got {', '.join(twice) or 'none'}")
    blank = np.isnan(p).all(axis=1)
    if blank.all():
        raise ValueError(f"all {n} frames have NaN scores: nothing to smooth")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~blank & (~np.isfinite(p) | (p < 0) | (p > 1 + 1e-6)).any(axis=1))
    if bad.size:  # NaN in part of a row, inf, or out of [0, 1]
        raise ValueError(f"frame {bad[0]}: scores {p[bad[0]].tolist()} are not probabilities")
    if times_s is None:
        step = settings.frame_interval_s
        return p, keys, np.arange(n) * (step or 1.0), step is not None
    times = np.asarray(times_s, dtype=np.float64)
    if times.shape != (n,):
        raise ValueError(f"times_s has shape {times.shape}, scores have {n} frames")
    bad = np.flatnonzero(~np.isfinite(times) | (np.diff(times, prepend=times[0]) < 0))
    if bad.size:
        raise ValueError(f"times_s: frame {bad[0]} at {times[bad[0]]} is not finite or goes back")
    return p, keys, times, True


def _passage(
    p: np.ndarray,
    blank: np.ndarray,
    keys: list[str],
    labels: Sequence[str],
    times: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    llr: float,
    floor: float,
) -> tuple[list[Landmark], dict[str, int]]:
    """The landmarks seen and the first frame of every passage site the path visits, over
    the segments of ``bounds`` (their first and last frames)."""
    column = {key: i for i, key in enumerate(keys)}
    sites: list[tuple[str, int | None, bool]] = []  # (site, its column, is a landmark)
    for name, landmark in PASSAGE:
        if name in column:
            if landmark and (not sites or sites[-1][2]):
                sites.append(("", None, False))  # an unlabelled region
            sites.append((name, column[name], landmark))
    if sites and sites[-1][2]:
        sites.append(("", None, False))
    if len(sites) < 2:
        return [], {}
    firsts, lasts = bounds
    q = np.where(blank[:, None], 0.0, p)
    scored = np.add.reduceat(~blank, firsts)
    mean = np.add.reduceat(q, firsts, axis=0) / np.maximum(scored, 1)[:, None]
    named = [c for _, c, _ in sites if c is not None]
    free = mean.sum(axis=1) - mean[:, named].sum(axis=1)  # score on labels that name no site
    emit = np.empty((len(firsts), len(sites)))
    for s, (_, col, landmark) in enumerate(sites):
        emit[:, s] = free if col is None else mean[:, col] + (0.0 if landmark else free)
    emit = np.log(np.maximum(emit, floor)) * scored[:, None]
    cost = np.array([llr if landmark else 0.0 for _, _, landmark in sites])
    path = monotone_path(emit, cost)
    entries: dict[str, int] = {}
    landmarks = []
    for s, (name, col, landmark) in enumerate(sites):
        run = np.flatnonzero(path == s)
        if not name or not run.size:
            continue
        first, last = int(firsts[run[0]]), int(lasts[run[-1]])
        entries[name] = first
        if landmark and col is not None:
            seen = ~blank[first : last + 1]
            score = float(p[first : last + 1][seen, col].mean()) if seen.any() else 0.0
            landmarks.append(
                Landmark(labels[col], first, float(times[first]), score, last, float(times[last]))
            )
    return landmarks, entries


def _transit(
    entries: dict[str, int], colon: tuple[str, int] | None, times: np.ndarray
) -> dict[str, float | None]:
    """Gastric: z-line (else the stomach's first frame, else the first frame) to the
    pylorus (else the small bowel's first frame); small bowel: from there to the colon's
    entry (``COLON_ENTRY``); colonic: from there to the last frame."""
    stomach = entries.get("z-line", entries.get("stomach", 0))
    duodenum = entries.get("pylorus", entries.get("small-bowel"))
    into_colon = colon[1] if colon else None

    def span(a: int | None, b: int | None) -> float | None:
        return None if a is None or b is None or b < a else float(times[b] - times[a])

    legs = ((stomach, duodenum), (duodenum, into_colon), (into_colon, len(times) - 1))
    return {name: span(a, b) for name, (a, b) in zip(TRANSITS, legs, strict=True)}


def _prep(
    path: np.ndarray, keys: list[str], labels: Sequence[str], colon: tuple[str, int] | None
) -> dict[str, Any] | None:
    """Over the colon's frames (from its entry; all frames when none was seen), the
    smoothed frames per prep label (``bbps*``, ``impacted-stool``) and their share of the
    rated frames, those whose smoothed label is a prep label. Adequate: a ``bbps`` label
    whose every score is 2 or more (``bbps-2-3``); impacted stool is rated, not adequate."""
    prep = [i for i, key in enumerate(keys) if key.startswith("bbps") or key == "impacted-stool"]
    if not prep:
        return None
    start = colon[1] if colon else 0
    counts = np.bincount(path[start:], minlength=len(keys))
    rated = int(counts[prep].sum())
    grades = {i: [int(d) for d in re.findall(r"\d", keys[i])] for i in prep}
    adequate = int(sum(counts[i] for i, g in grades.items() if g and min(g) >= 2))
    out = {"from": colon[0] if colon else "first frame", "from_frame": start}
    out |= {"colon_frames": len(path) - start, "rated_frames": rated}
    out["frames"] = {labels[i]: int(counts[i]) for i in prep}
    out["share"] = {labels[i]: round(int(counts[i]) / rated, 4) if rated else 0.0 for i in prep}
    return out | {"adequate_share": round(adequate / rated, 4) if rated else None}
