"""The one thread that writes a study: frames and ledger first, findings batched.

The receiving thread hands over each batch of frames with the ledger outcomes an ACK
would move past and waits until they are durable (it must: only then may the recorder
hear of them). Inference workers hand over outcomes and findings without waiting; they
go into the next frames' commit, or on their own at least every ``COMMIT_EVERY_S``
without an fsync (a finding lost to a power cut is inferred again on resume; a frame is
never committed that way). Nobody else touches the database, so no writer ever waits
on another's transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edge.study.errors import StorageError
from edge.study.store import MAX_COMMIT_FRAMES, Finding, FrameRef, Study

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.01  # findings wait at most this long for a commit (one not fsynced)
T = TypeVar("T")


@dataclass(frozen=True)
class NewFrame:
    session: int
    index: int
    data: bytes
    codec: int
    timestamp_us: int
    width: int = 0
    height: int = 0
    received_us: int = 0
    origin: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A frame's inference outcome, as a worker hands it over."""

    session: int
    index: int
    status: str  # done | failed
    reason: str | None = None
    inferred_ms: float | None = None
    findings: tuple[Finding, ...] = ()
    received: float = 0.0  # time.monotonic() when the frame was fully received
    ref: FrameRef | None = None  # where the frame is (the dashboard shows the latest)
    features: tuple[Any, ...] = ()  # the appearance of each detector box, in order
    size: tuple[int, int] = (0, 0)  # the decoded frame's width and height


@dataclass
class _Job:
    frames: list[NewFrame] = field(default_factory=list)
    ledger: list[tuple[int, int, str, str | None]] = field(default_factory=list)
    call: Callable[[Study], Any] | None = None
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class StudyWriter:
    def __init__(self, study: Study, on_committed: Callable[[list[Outcome]], None]) -> None:
        self.study = study
        self.on_committed = on_committed  # called in the writer thread after each commit
        self.error: StorageError | None = None
        self._cond = threading.Condition()
        self._jobs: list[_Job] = []
        self._outcomes: list[Outcome] = []
        self._first_outcome = 0.0
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="study-writer", daemon=True)
        self._thread.start()

    # --- the other threads' side ---------------------------------------------------

    def store(
        self, frames: list[NewFrame], ledger: list[tuple[int, int, str, str | None]]
    ) -> list[FrameRef | None]:
        """Make frames (None for those the study already has) and ledger outcomes
        durable; StorageError if they cannot be."""
        return list(self._submit(_Job(frames=frames, ledger=ledger)))

    def call(self, fn: Callable[[Study], T]) -> T:
        """Run ``fn(study)`` in the writer thread (run records, link statistics)."""
        result: T = self._submit(_Job(call=fn))
        return result

    def put(self, outcome: Outcome) -> None:
        with self._cond:
            if not self._outcomes:
                self._first_outcome = time.monotonic()
            self._outcomes.append(outcome)
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._outcomes)

    def close(self) -> None:
        """Commit what is queued and stop the thread (the study stays open)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _submit(self, job: _Job) -> Any:
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise StorageError(f"{self.study.folder}: the study is closing")
            self._jobs.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # --- the writer thread ---------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    self._cond.wait(COMMIT_EVERY_S)
                jobs, self._jobs = self._jobs, []
                take = not jobs or not self._closing
                outcomes = self._outcomes if take else []
                if take:
                    self._outcomes = []
                last = self._closing and not self._jobs and not self._outcomes
            if self.error is None:
                self._write(jobs, outcomes)
            else:
                for job in jobs:
                    job.error = self.error
                    job.done.set()
            if last:
                return

    def _due(self) -> bool:
        if self._jobs or self._closing:
            return True
        return bool(self._outcomes) and (
            time.monotonic() - self._first_outcome >= COMMIT_EVERY_S or len(self._outcomes) >= 256
        )

    def _write(self, jobs: list[_Job], outcomes: list[Outcome]) -> None:
        study = self.study
        try:
            for job in jobs:
                if job.call is not None:
                    try:
                        job.result = job.call(study)
                    except Exception as exc:  # the caller's to report
                        job.error = exc
                    continue
                refs: list[FrameRef | None] = []
                for f in job.frames:
                    refs.append(
                        study.add(
                            f.session,
                            f.index,
                            f.data,
                            f.codec,
                            f.timestamp_us,
                            width=f.width,
                            height=f.height,
                            received_us=f.received_us,
                            origin=f.origin,
                        )
                    )
                    if study.frames_pending >= MAX_COMMIT_FRAMES:
                        study.commit()
                job.result = refs
                for entry in job.ledger:
                    study.settle(*entry)
            for o in outcomes:
                study.add_inference(
                    o.session,
                    o.index,
                    o.status,
                    reason=o.reason,
                    inferred_ms=o.inferred_ms,
                    findings=o.findings,
                )
            study.commit(durable=any(job.call is None for job in jobs))
        except Exception as exc:  # whatever it is, nothing more may be acknowledged
            why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            self.error = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(
                    f"{study.folder}: cannot store frames ({why}); stopping: the recorder "
                    "keeps every frame not acknowledged"
                )
            )
            log.error("%s", self.error)
            for job in jobs:
                job.error = self.error
                job.done.set()
            return
        for job in jobs:
            job.done.set()
        if outcomes:
            try:
                self.on_committed(outcomes)
            except Exception as exc:  # a bug: stop the study cleanly, never hang it
                log.exception("after a commit")
                self.error = StorageError(
                    f"{study.folder}: internal error after a commit ({type(exc).__name__}: "
                    f"{exc}); stopping: everything committed is kept"
                )
