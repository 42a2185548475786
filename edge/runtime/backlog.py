"""The backlog: references to stored frames waiting for inference, and the frames
that went past it (a live source's lag, a resumed study), found again in the study."""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from dataclasses import dataclass

from edge.runtime.sources import SourceFrame
from edge.study.store import FrameRef


@dataclass
class Work:
    """A stored frame waiting for inference."""

    ref: FrameRef
    received: float  # time.monotonic() when it was fully received (or found again)
    frame: SourceFrame | None = None  # where a RESULT goes back to

    @property
    def key(self) -> tuple[int, int]:
        return self.ref.session, self.ref.index


class Backlog:
    """References to stored frames waiting for inference. A live source's backlog holds
    at most ``limit``: when full, the policy decides which frame goes past for now
    (``skip-oldest``: the oldest waiting, ``skip-newest``: the new one). A recording's
    is never overrun: its reader waits for room (``wait_for_room``)."""

    def __init__(self, limit: int, policy: str) -> None:
        self.limit = limit
        self.policy = policy
        self._items: deque[Work] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def put(self, work: Work, *, live: bool = True) -> Work | None:
        """Queue ``work``; returns the frame that went past to make room, if any."""
        with self._cond:
            skipped = None
            if live and len(self._items) >= self.limit:
                if self.policy == "skip-newest":
                    return work
                skipped = self._items.popleft()
            self._items.append(work)
            self._cond.notify()
            return skipped

    def get(self, timeout: float) -> Work | None:
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout)
            work = self._items.popleft() if self._items else None
            self._cond.notify_all()  # room for a waiting reader
            return work

    def wait_for_room(self, timeout: float) -> bool:
        with self._cond:
            if len(self._items) >= self.limit:
                self._cond.wait(timeout)
            return len(self._items) < self.limit

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Deferred:
    """Stored frames without an inference outcome that no one holds: found in the
    study, in order, a few at a time, so that their number is bounded by the disk and
    not by memory. ``claimed`` are the frames queued, being inferred or waiting for
    their outcome's commit: never handed out twice."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.claimed: set[tuple[int, int]] = set()
        self._cursor = (0, 0)  # no deferred frame before this one

    def claim(self, key: tuple[int, int]) -> bool:
        """Hold ``key``; False if someone already does."""
        with self.lock:
            if key in self.claimed:
                return False
            self.claimed.add(key)
            return True

    def release(self, key: tuple[int, int], *, deferred: bool = False) -> None:
        """``key`` is no longer held; ``deferred``: it went past without an outcome."""
        with self.lock:
            self.claimed.discard(key)
            if deferred and key < self._cursor:
                self._cursor = key

    def take(self, count: int) -> list[FrameRef]:
        """Up to ``count`` deferred frames, now claimed."""
        with self.lock:
            rows = self.db.execute(
                "SELECT f.session, f.idx, f.segment, f.offset, f.length, f.codec, f.width, "
                "f.height, f.crc FROM frames f LEFT JOIN inference i ON i.session = f.session "
                "AND i.idx = f.idx WHERE i.status IS NULL AND (f.session, f.idx) >= (?, ?) "
                "ORDER BY f.session, f.idx LIMIT ?",
                (*self._cursor, count + len(self.claimed)),
            ).fetchall()
            out: list[FrameRef] = []
            for row in rows:
                key = (int(row[0]), int(row[1]))
                if key in self.claimed:
                    continue
                if len(out) == count:
                    break
                out.append(FrameRef(*row))
                self.claimed.add(key)
                self._cursor = (key[0], key[1] + 1)
            if not out and rows:
                # Only claimed frames ahead: past them, nothing is deferred yet.
                last = rows[-1]
                self._cursor = (int(last[0]), int(last[1]) + 1)
            return out
