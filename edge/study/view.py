"""``study ls`` and ``study show``: what a study holds, read-only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.study import archive, database
from edge.study.readonly import StudyView, is_study, lock_holder, open_study

MAX_DEPTH = 3  # ``ls DIR`` looks this many folders down (a demo's --out holds study/)


def when(us: int | None) -> str:
    """A wall-clock time in microseconds, as local time; '-' when not known."""
    if not us:
        return "-"
    return datetime.fromtimestamp(us / 1e6).astimezone().isoformat(timespec="seconds")


def find_studies(root: Path) -> Iterator[Path]:
    """Study folders at or under ``root``, in name order; symbolic links not followed."""
    if is_study(root):
        yield root
        return
    yield from _walk(root, MAX_DEPTH)


def _walk(folder: Path, depth: int) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if is_study(path):
            yield path
        elif depth > 1:
            yield from _walk(path, depth - 1)


def counts(view: StudyView) -> dict[str, Any]:
    """The figures ``ls`` shows on one line and ``show`` starts with."""
    db = view.db
    frames, sessions, first, last = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT session), MIN(NULLIF(received_us, 0)), "
        "MAX(received_us) FROM frames"
    ).fetchone()
    status = dict(db.execute("SELECT status, COUNT(*) FROM inference GROUP BY status").fetchall())
    inferred = status.get("done", 0)
    failed = status.get("failed", 0)
    return {
        "frames": frames,
        "sessions": sessions,
        "first_received": when(first),
        "last_received": when(last),
        "inferred": inferred,
        "failed": failed,
        "not_inferred": max(0, frames - inferred - failed),
        "runs": db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
        "schema": view.version,
        "archive_bytes": archive.archive_bytes(view.archive_dir),
    }


def ls_line(folder: Path) -> str:
    holder = lock_holder(folder)
    in_use = f"in use by {holder}" if holder else "not in use"
    try:
        with open_study(folder) as view:
            c = counts(view)
    except database.Unreadable as exc:
        return f"{folder}  unusable: {str(exc).removeprefix(f'{folder}/')}  ({in_use})"
    return (
        f"{folder}  {c['frames']} frames  {c['sessions']} session(s)  "
        f"{c['first_received']} .. {c['last_received']}  "
        f"inferred {c['inferred']} / failed {c['failed']} / not inferred {c['not_inferred']}  "
        f"{c['runs']} run(s)  {in_use}  schema {c['schema']}"
    )


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text[:80]}
    return value if isinstance(value, dict) else {"value": value}


SETTINGS_SHOWN = (
    "pipeline.workers",
    "pipeline.policy",
    "pipeline.backlog",
    "classifier.backend",
    "detector.backend",
    "detector.conf",
    "link.capacity",
)
SUMMARY_SHOWN = (
    "frames_stored",
    "frames_inferred",
    "frames_failed",
    "frames_skipped",
    "frames_not_inferred",
    "duplicates",
    "fps",
    "error",
)


def show(folder: Path) -> dict[str, Any]:
    """Everything ``study show`` prints, as one JSON-ready dict."""
    with open_study(folder) as view:
        db = view.db
        db.execute("BEGIN")
        try:
            out = _show(view)
        finally:
            db.rollback()
    out["in_use_by"] = lock_holder(folder)
    return out


def _show(view: StudyView) -> dict[str, Any]:
    db = view.db
    runs = []
    for rowid, started, stopped, source, settings, summary in db.execute(
        "SELECT rowid, started_us, stopped_us, source, settings, summary FROM runs ORDER BY rowid"
    ):
        s = _loads(settings)
        effective = s.get("settings", {}) if isinstance(s.get("settings"), dict) else {}
        models = s.get("models", {}) if isinstance(s.get("models"), dict) else {}
        sums = _loads(summary)
        runs.append(
            {
                "run": rowid,
                "started": when(started),
                "stopped": when(stopped) if stopped else "did not stop cleanly",
                "source": source,
                "settings": {k: effective[k] for k in SETTINGS_SHOWN if k in effective},
                "models": {
                    role: {k: m.get(k) for k in ("name", "backend", "device", "sha256")}
                    for role, m in models.items()
                    if isinstance(m, dict)
                },
                "summary": {k: sums[k] for k in SUMMARY_SHOWN if k in sums},
            }
        )
    ledger = [
        {"outcome": o, "reason": r, "frames": n}
        for o, r, n in db.execute(
            "SELECT outcome, reason, COUNT(*) FROM ledger GROUP BY outcome, reason "
            "ORDER BY outcome, reason"
        )
    ]
    sessions = [
        {"session": s, "first": lo, "last": hi, "frames": n, "missing": hi - lo + 1 - n}
        for s, lo, hi, n in db.execute(
            "SELECT session, MIN(idx), MAX(idx), COUNT(*) FROM frames GROUP BY session "
            "ORDER BY MIN(rowid)"
        )
    ]
    labels = [
        {"model": m, "label": lab, "findings": n}
        for m, lab, n in db.execute(
            "SELECT model, label, COUNT(*) FROM findings GROUP BY model, label "
            "ORDER BY model, 3 DESC"
        )
    ]
    link = db.execute(
        "SELECT time_us, stats FROM link_stats ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    return {
        "study": str(view.folder),
        "counts": counts(view),
        "runs": runs,
        "ledger": ledger,
        "sessions": sessions,
        "findings": labels,
        "link_stats": {"time": when(link[0]), **_loads(link[1])} if link else None,
    }


def show_text(info: dict[str, Any]) -> list[str]:
    c = info["counts"]
    out = [
        f"study {info['study']}  schema {c['schema']}  "
        + (f"in use by {info['in_use_by']}" if info["in_use_by"] else "not in use"),
        f"frames {c['frames']} in {c['sessions']} session(s), {c['archive_bytes'] / 1e6:.1f} MB, "
        f"received {c['first_received']} .. {c['last_received']}",
        f"inference: {c['inferred']} done, {c['failed']} failed, {c['not_inferred']} not inferred",
    ]
    for r in info["runs"]:
        out.append(f"run {r['run']}: {r['started']} .. {r['stopped']}  source {r['source']}")
        if r["settings"]:
            out.append("  settings: " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()))
        for role, m in r["models"].items():
            out.append(
                f"  {role}: {m['name']} ({m['backend']}, {m['device']}) sha256 {m['sha256']}"
            )
        if r["summary"]:
            out.append("  summary: " + ", ".join(f"{k} {v}" for k, v in r["summary"].items()))
    out.append("ledger:" + ("" if info["ledger"] else " empty"))
    for row in info["ledger"]:
        why = f" ({row['reason']})" if row["reason"] else ""
        out.append(f"  {row['outcome']}{why}: {row['frames']}")
    out.append("sessions:" + ("" if info["sessions"] else " none"))
    for s in info["sessions"]:
        gap = f", {s['missing']} indices missing" if s["missing"] else ""
        out.append(f"  {s['session']}: {s['first']}..{s['last']} ({s['frames']} frames{gap})")
    if info["findings"]:
        out.append(
            "findings: "
            + ", ".join(f"{f['model']} {f['label']} {f['findings']}" for f in info["findings"])
        )
    link = info["link_stats"]
    if link:
        shown = {k: v for k, v in link.items() if not isinstance(v, dict)}
        out.append("link stats (last): " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        for key in ("ledger", "link", "decoder_errors"):
            if isinstance(link.get(key), dict) and link[key]:
                out.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in link[key].items()))
    return out
