"""What ``study verify`` found: problems naming the frame, counted per kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIST_MAX = 1000  # problems listed per kind; the rest are counted


@dataclass(frozen=True)
class Problem:
    kind: str  # crc | header | unindexed | duplicate | damage | ledger | inference | findings
    message: str
    session: int | None = None
    index: int | None = None
    segment: int | None = None
    offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.session is not None:
            out["frame"] = f"{self.session}:{self.index}"
        for key in ("session", "index", "segment", "offset"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class Report:
    folder: Path
    frames: int = 0
    sessions: int = 0
    segments: int = 0
    archive_bytes: int = 0
    ledger_rows: int = 0
    inferred: int = 0
    findings: int = 0
    in_use: str | None = None
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # every problem, listed or not
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if self.counts[problem.kind] <= LIST_MAX:
            self.problems.append(problem)

    def line(self) -> str:
        per_k = self.seconds / self.frames * 1000 if self.frames else 0.0
        return (
            f"{self.frames} frames in {self.sessions} session(s), {self.segments} segment(s) "
            f"({self.archive_bytes / 1e6:.1f} MB), {self.ledger_rows} ledger rows, "
            f"{self.inferred} inferred, {self.findings} findings; "
            f"{self.seconds:.2f} s ({per_k * 1000:.0f} ms per 1,000 frames)"
        )

    def text(self) -> list[str]:
        if self.ok:
            return [f"ok: {self.line()}", *(f"note: {n}" for n in self.notes)]
        out = [p.message for p in self.problems]
        for kind, n in sorted(self.counts.items()):
            if n > LIST_MAX:
                out.append(f"... and {n - LIST_MAX} more {kind} problems")
        out += [f"note: {n}" for n in self.notes]
        total = sum(self.counts.values())
        out.append(f"FAILED: {total} problem(s) in {self.line()}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "study": str(self.folder),
            "ok": self.ok,
            "frames": self.frames,
            "sessions": self.sessions,
            "segments": self.segments,
            "archive_bytes": self.archive_bytes,
            "ledger_rows": self.ledger_rows,
            "inferred": self.inferred,
            "findings": self.findings,
            "in_use_by": self.in_use,
            "seconds": round(self.seconds, 3),
            "problem_counts": dict(self.counts),
            "problems": [p.as_dict() for p in self.problems],
            "notes": self.notes,
        }
