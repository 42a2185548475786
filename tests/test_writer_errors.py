"""A bug in what runs after a commit (the runtime's call-back: statistics, deferred
frames, the live events) stops the study with one line instead of leaving the writer
thread dead and the study hung (it was: a live-events error hung a demo for good)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.runtime.writer import NewFrame, Outcome, StudyWriter
from edge.study.errors import StorageError
from edge.study.store import Study


def test_an_error_after_a_commit_stops_the_writer_cleanly(tmp_path: Path):
    called = threading.Event()

    def broken(outcomes: list[Outcome]) -> None:
        called.set()
        raise ValueError("position 0: frame_size (0, 0) is not (w, h) > 0")

    study = Study(tmp_path / "study")
    writer = StudyWriter(study, broken)
    (ref,) = writer.store([NewFrame(1, 0, b"frame", 0, 0)], [])
    assert ref is not None
    writer.put(Outcome(1, 0, "done"))
    assert called.wait(10)
    writer.close()  # returns: the thread ended instead of dying mid-loop
    assert writer.error is not None
    assert str(writer.error).splitlines() == [str(writer.error)]
    assert "internal error after a commit (ValueError: position 0" in str(writer.error)
    with pytest.raises(StorageError):
        writer.store([NewFrame(1, 1, b"more", 0, 0)], [])
    # What was committed is kept.
    assert list(study.frames()) == [(1, 0)]
    study.close()
