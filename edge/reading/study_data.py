"""What the reading aid reads of a study: its frames in order with their times, every
class score, the detections, the link's health and the models; read-only, through
``edge.study.readonly`` (a study being written is read as last committed)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.study import schema
from edge.study.archive import Reader
from edge.study.readonly import StudyView, open_study
from edge.study.store import FrameRef, read_frame

MIN_INTERVAL_US = 1000  # frames closer than this on average carry no capture time (a copy's mtimes)


@dataclass(frozen=True)
class Box:
    box: tuple[float, float, float, float]
    score: float
    label: str


@dataclass
class StudyData:
    folder: Path
    refs: list[FrameRef]  # every frame, in study order: sessions as they came, then index
    times_s: np.ndarray | None  # seconds from the first frame; None: the frames carry no time
    labels: tuple[str, ...]  # the classifier's classes
    scores: np.ndarray  # len(refs) x len(labels); a row of NaN: not classified
    boxes: dict[int, list[Box]]  # position -> the detector's boxes
    inferred: np.ndarray  # bool per frame: inference done
    latency_ms: list[float]
    ledger: dict[str, int]
    link: dict[str, Any] | None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.refs)

    def name(self, position: int) -> str:
        ref = self.refs[position]
        return f"{ref.session}:{ref.index}"

    def frame_bytes(self, reader: Reader, position: int) -> bytes:
        return read_frame(reader, self.refs[position])


def load(folder: Path) -> StudyData:
    """A study's data for reading; a one-line ``StudyError`` when it cannot be opened."""
    with open_study(folder) as view:
        view.db.execute("BEGIN")  # one snapshot of a study being written
        try:
            return _load(view)
        finally:
            view.db.rollback()


def _load(view: StudyView) -> StudyData:
    db = view.db
    have = view.columns("frames")  # schema 0 has no CRC and no origin
    crc = "f.crc" if "crc" in have else "NULL"
    origin = "f.origin" if "origin" in have else "NULL"
    rows = db.execute(
        "SELECT f.session, f.idx, f.segment, f.offset, f.length, f.codec, f.width, f.height, "
        f"{crc}, f.timestamp_us, {origin}, s.first FROM frames f JOIN (SELECT session, "
        "MIN(rowid) AS first FROM frames GROUP BY session) s USING (session) "
        "ORDER BY s.first, f.idx"
    ).fetchall()
    refs = [FrameRef(*r[:9]) for r in rows]
    position = {(r.session, r.index): i for i, r in enumerate(refs)}
    # A folder's files (an origin that is a path, not a video's name#number) carry the
    # time they were written, not when they were captured.
    from_files = bool(rows) and all(r[10] is not None and "#" not in r[10] for r in rows)
    times = None if from_files else _times([(r[0], r[9]) for r in rows])
    runs = _runs(db)
    labels, scores = _scores(view, position, len(refs), runs)
    boxes: dict[int, list[Box]] = defaultdict(list)
    for s, i, label, score, x0, y0, x1, y1 in db.execute(
        "SELECT session, idx, label, score, x0, y0, x1, y1 FROM findings "
        "WHERE model != 'classifier' AND x0 IS NOT NULL"
    ):
        if (s, i) in position:
            boxes[position[(s, i)]].append(Box((x0, y0, x1, y1), float(score), str(label)))
    inferred = np.zeros(len(refs), dtype=bool)
    latency = []
    for s, i, ms in db.execute(
        "SELECT session, idx, inferred_ms FROM inference WHERE status = 'done'"
    ):
        if (s, i) in position:
            inferred[position[(s, i)]] = True
        if ms is not None:
            latency.append(float(ms))
    ledger = {
        f"{o} ({r})" if r else o: n
        for o, r, n in db.execute("SELECT outcome, reason, COUNT(*) FROM ledger GROUP BY 1, 2")
    }
    link_row = db.execute("SELECT stats FROM link_stats ORDER BY rowid DESC LIMIT 1").fetchone()
    return StudyData(
        folder=view.folder,
        refs=refs,
        times_s=times,
        labels=labels,
        scores=scores,
        boxes=dict(boxes),
        inferred=inferred,
        latency_ms=latency,
        ledger=ledger,
        link=_json(link_row[0]) if link_row else None,
        runs=runs,
    )


def _times(stamps: list[tuple[int, int]]) -> np.ndarray | None:
    """Seconds from the first frame, each session continuing where the one before ended
    (a rebooted recorder starts its clock again); None when the stamps are not capture
    times: going backwards within a session, or all but equal (a folder copied at once)."""
    if not stamps:
        return np.zeros(0)
    out = np.zeros(len(stamps))
    offset = 0.0
    session_start = 0
    for k, (session, us) in enumerate(stamps):
        if k and session != stamps[k - 1][0]:
            step = out[k - 1] - out[k - 2] if k - 2 >= session_start else 0.0
            offset, session_start = out[k - 1] + step, k
        if k > session_start and us < stamps[k - 1][1]:
            return None
        out[k] = offset + (us - stamps[session_start][1]) / 1e6
    if len(stamps) > 1 and (out[-1] - out[0]) * 1e6 / (len(stamps) - 1) < MIN_INTERVAL_US:
        return None
    return out


def _scores(
    view: StudyView, position: dict[tuple[int, int], int], n: int, runs: list[dict[str, Any]]
) -> tuple[tuple[str, ...], np.ndarray]:
    """Every class score per frame; a frame of a schema-1 study has only its top class,
    taken as that score for it and the rest shared evenly among the others."""
    db = view.db
    labels: list[str] = []
    per_frame: dict[int, dict[str, float]] = {}
    if "class_scores" in schema.tables(db):
        for s, i, text in db.execute(
            "SELECT c.session, c.idx, c.scores FROM class_scores c JOIN inference i "
            "USING (session, idx) WHERE c.model = 'classifier' AND i.status = 'done'"
        ):
            got = _json(text)
            if (s, i) in position and got:
                per_frame[position[(s, i)]] = {str(k): float(v) for k, v in got.items()}
                labels.extend(k for k in got if k not in labels)
    tops: dict[int, tuple[str, float]] = {}
    for s, i, label, score in db.execute(
        "SELECT session, idx, label, score FROM findings WHERE model = 'classifier'"
    ):
        if (s, i) in position and position[(s, i)] not in per_frame:
            tops[position[(s, i)]] = (str(label), float(score))
            if label not in labels:
                labels.append(str(label))
    known = _card_labels(runs)
    if known and set(labels) <= set(known):
        labels = list(known)
    scores = np.full((n, len(labels)), np.nan)
    column = {label: j for j, label in enumerate(labels)}
    for p, got in per_frame.items():
        scores[p] = [got.get(label, 0.0) for label in labels]
    rest = max(len(labels) - 1, 1)
    for p, (label, score) in tops.items():
        scores[p] = (1.0 - score) / rest
        scores[p, column[label]] = score
    return tuple(labels), scores


def _card_labels(runs: list[dict[str, Any]]) -> list[str]:
    """The classifier's labels from the card of the last run's model, when it is still there."""
    for run in reversed(runs):
        card = run.get("cards", {}).get("classifier") or {}
        if isinstance(card.get("labels"), list):
            return [str(x) for x in card["labels"]]
    return []


def _runs(db: sqlite3.Connection) -> list[dict[str, Any]]:
    out = []
    for started, stopped, source, settings, summary in db.execute(
        "SELECT started_us, stopped_us, source, settings, summary FROM runs ORDER BY rowid"
    ):
        s = _json(settings)
        models = s.get("models") if isinstance(s.get("models"), dict) else {}
        cards = {}
        for role, m in (models or {}).items():
            card = Path(str(m.get("file", ""))).with_name(
                Path(str(m.get("file", ""))).name + ".card.json"
            )
            try:
                cards[role] = _json(card.read_text(encoding="utf-8")) if m.get("file") else {}
            except (OSError, UnicodeDecodeError):
                cards[role] = {}  # the model has moved since, or its card is unreadable
        out.append(
            {
                "started_us": started,
                "stopped_us": stopped,
                "source": source,
                "models": models or {},
                "cards": cards,
                "summary": _json(summary),
            }
        )
    return out


def _json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
