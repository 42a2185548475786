"""The study's disk: what it will need, and a stop before it is full.

At start the runtime estimates what the study needs (``[storage]``: frames a second x
hours x the mean frame size, measured from the study's own frames when it has some) and
warns when the disk cannot hold it; it refuses to start below the reserve. During the
study it looks at the free space every second and, when it falls to the reserve, stops
receiving: what was acknowledged is stored and stays intact, inference and the study's
closing have the reserve to write in, and the recorder keeps what it was not told is
stored. The reserve is the guard; the estimate is the warning.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import BadInputError
from edge.study import database
from edge.study.readonly import connect_readonly

MB = 1_000_000
OVERHEAD = 1.03  # the database and record headers beside the frames' bytes, measured ~1 %


def existing_parent(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (a study not yet created)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(existing_parent(folder)).free


@dataclass(frozen=True)
class Estimate:
    need_bytes: int
    frame_bytes: float
    frame_size_from: str  # "the config" or "N frames of this study"


def measured_frame_bytes(db_path: Path) -> tuple[float, int] | None:
    """The mean size of the study's frames so far, and how many."""
    if not db_path.is_file():
        return None
    try:
        db = connect_readonly(db_path)
        try:
            mean, n = db.execute("SELECT AVG(length), COUNT(*) FROM frames").fetchone()
        finally:
            db.close()
    except database.Unreadable:  # the study's own opening says what is wrong
        return None
    return (float(mean), int(n)) if n else None


def estimate(fps: float, hours: float, frame_kb: float, db_path: Path) -> Estimate | None:
    """None when the frame rate is not given (``storage.fps = 0``) or nothing says a size."""
    if fps <= 0 or hours <= 0:
        return None
    if frame_kb > 0:
        size, source = frame_kb * 1000, "the config"
    elif (measured := measured_frame_bytes(db_path)) is not None:
        size, source = measured[0], f"{measured[1]:,} frames of this study"
    else:
        return None
    return Estimate(round(fps * hours * 3600 * size * OVERHEAD), size, source)


def check_at_start(
    folder: Path, reserve_mb: int, fps: float, hours: float, frame_kb: float
) -> str | None:
    """Raise (one line) below the reserve; a warning line when the estimate does not fit."""
    free = free_bytes(folder)
    if free <= reserve_mb * MB:
        raise BadInputError(
            f"{folder}: {free / MB:,.0f} MB free, at or below the reserve of {reserve_mb} MB "
            "(storage.reserve_mb): free some space or give the study another disk"
        )
    est = estimate(fps, hours, frame_kb, folder / "study.db")
    if est is not None and est.need_bytes > free - reserve_mb * MB:
        hours_fit = (free - reserve_mb * MB) / (fps * 3600 * est.frame_bytes * OVERHEAD)
        return (
            f"the study needs about {est.need_bytes / 1e9:.1f} GB ({fps:g} frames/s for "
            f"{hours:g} h at {est.frame_bytes / 1000:.0f} kB a frame, from {est.frame_size_from}) "
            f"but {folder} has {(free - reserve_mb * MB) / 1e9:.1f} GB above the reserve: "
            f"about {hours_fit:.1f} h; it will stop receiving then, keeping every frame stored"
        )
    return None


class DiskWatch:
    """``low()``: why to stop receiving, once the free space is at the reserve."""

    def __init__(
        self,
        folder: Path,
        reserve_mb: int,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        free: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.folder = folder
        self.reserve = reserve_mb * MB
        self.every_s = every_s
        self.clock = clock
        self.free = free
        self._next = clock()

    def low(self) -> str | None:
        now = self.clock()
        if now < self._next:
            return None
        self._next = now + self.every_s
        try:
            free = self.free(self.folder)
        except OSError:
            return None  # a vanished folder is the store's to report, with its own words
        if free > self.reserve:
            return None
        return (
            f"{self.folder}: {free / MB:,.0f} MB free, at the reserve of "
            f"{self.reserve // MB} MB: stopped receiving; every acknowledged frame is stored"
        )
