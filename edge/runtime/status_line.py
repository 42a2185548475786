"""The live status line of a study on the terminal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from edge.runtime.stats import DETECTION_FRAMES

if TYPE_CHECKING:
    from edge.runtime.pipeline import Runtime


class StatusLine:
    """One live line on a terminal (rewritten in place); elsewhere a line every 10 s."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, runtime: Runtime) -> None:
        now = time.monotonic()
        if not self.enabled or (not self.tty and now - self._last < 10.0):
            return
        self._last = now
        snap = runtime.stats.snapshot()
        c = snap["counters"]
        ledger = runtime.source.ledger.counts()
        lost = sum(v for k, v in ledger.items() if k.startswith(("LOST", "DROPPED")))
        latest = snap["latest_class"]
        p95 = snap["latency_ms"]["p95"]
        line = (
            f"{c.get('stored', 0):,} stored  {c.get('inferred', 0):,} inferred  "
            f"{snap['fps_in']:.1f}/{snap['fps_processed']:.1f} fps  "
            f"p95 {p95 if p95 is not None else '-'} ms  "
            f"backlog {snap['gauges'].get('backlog', 0)}  "
            f"skipped {c.get('skipped', 0)}  link lost {lost}  "
            f"class {latest[0] if latest else '-'}"
        )
        for role, detector in runtime.models.detectors.items():  # "bleeding frames 3"
            line += f"  {'/'.join(detector.labels)} frames {c.get(DETECTION_FRAMES + role, 0)}"
        if self.tty:
            print(f"\r\033[K{line}", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def end(self) -> None:
        if self.enabled and self.tty:
            print(file=self.stream)
