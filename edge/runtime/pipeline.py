"""The runtime's pipeline: frames in, stored, inferred, findings out.

    receiving thread (the caller's)         study writer            inference worker(s)
    source.poll -> writer.store -------->   archive + fsync         Backlog.get (a FrameRef)
      (with the ledger outcomes an ACK      + one commit: frames,     -> read + CRC check
       would move past; waits until         ledger, findings          -> decode, classify,
       they are durable)                                                 detect
      -> confirm + flush (the ACK goes out)  <---- outcomes -------   -> writer.put
      -> Backlog.put (a reference)                                    -> RESULT queued

Receiving never waits on inference. The recorder hears nothing (no ACK, and no ACK
moving past a lost or dropped frame) before what it acknowledges is durable, so a crash
loses only what the recorder still holds and will send again.

A recording (a folder, a video file, a recorded study re-read over the link) is never
skipped: the source is read only while the backlog has room, so inference sets the pace
(on the link: no reading, no ACK, no credits). A live source sets its own pace: when the
backlog is full the policy lets a frame go past (``skip-oldest`` stays current,
``skip-newest`` stays in order); it stays stored without an inference outcome and is
inferred when the backlog runs dry, or at the latest on resume (``backlog.Deferred``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import cv2

from edge.errors import BadInputError
from edge.preprocess import Image
from edge.runtime.backlog import Backlog, Deferred, Work
from edge.runtime.disk import DiskWatch
from edge.runtime.inference import InferenceWorker, decode_frame, result_message
from edge.runtime.live import LiveReading
from edge.runtime.models import Models, model_figures
from edge.runtime.sources import FrameSource, SourceFrame
from edge.runtime.stats import DETECTION_FRAMES, Stats
from edge.runtime.writer import NewFrame, Outcome, StudyWriter
from edge.study.archive import Reader
from edge.study.errors import StorageError
from edge.study.store import Study, connect
from firmware_bridge.protocol import Alert, Codec, Result, ResultStatus

log = logging.getLogger(__name__)

LINK_STATS_EVERY_S = 10.0
JPEG_QUALITY = 95  # frames that arrive decoded (a camera) are archived as JPEG
SKIPS_KEPT = 10_000

__all__ = ["Backlog", "Runtime", "StorageError", "Work", "decode_frame", "result_message"]


class Runtime:
    def __init__(
        self,
        source: FrameSource,
        study: Study,
        models: Models | Sequence[Models],
        *,
        backlog: int = 256,
        policy: str = "skip-oldest",
        drain_s: float = 10.0,
        jsonl: TextIO | None = None,
        on_tick: Callable[[Runtime], None] | None = None,
        recording: bool | None = None,
    ) -> None:
        self.source = source
        self.study = study
        # One inference worker per Models: each runs its own frames from the backlog.
        self.workers = [models] if isinstance(models, Models) else list(models)
        if not self.workers:
            raise ValueError("a runtime needs at least one set of models")
        self.models = self.workers[0]  # what the run describes: every worker's are alike
        self.recording = source.recording if recording is None else recording
        self.backlog = Backlog(backlog, policy)
        self.drain_s = drain_s
        self.jsonl = jsonl
        self.on_tick = on_tick  # called about every 0.25 s from the receiving thread
        self.stats = Stats()
        # The latest frames that went past the backlog (all are in the study, and are
        # inferred later): bounded, as a slow device may skip many in a 12-hour study.
        self.skipped: deque[tuple[int, int]] = deque(maxlen=SKIPS_KEPT)
        self.error: str | None = None  # why the run stopped, if not asked to
        self.link_status: dict[str, Any] = {}
        self._results: queue.SimpleQueue[tuple[SourceFrame, Result]] = queue.SimpleQueue()
        self._alerts: queue.SimpleQueue[tuple[int, int, Alert]] = queue.SimpleQueue()
        self.live: LiveReading | None = None  # events and alerts while the study runs
        self._persisted: dict[int, int] = {}  # session -> ledger indices below are stored
        self._stop_inference = threading.Event()
        self._jsonl_lock = threading.Lock()
        self._last_tick = 0.0
        self._reader_db = connect(study.db_path, readonly=True)
        self.deferred = Deferred(self._reader_db)
        self.writer = StudyWriter(study, self._committed)

    # --- receiving thread ----------------------------------------------------------

    def run(self, stop: threading.Event, done: threading.Event | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set or the source is exhausted (a finite source, or
        ``done`` set by whoever knows the stream has ended); returns the summary. An
        exhausted source is inferred to its end, a stop drains for ``drain_s``."""
        self._cpu_at_start = time.process_time()  # every thread of this process
        workers = [
            InferenceWorker(
                f"inference-{n}",
                models,
                self.backlog,
                self.deferred,
                self.writer,
                Reader(self.study.archive_dir),
                self.stats,
                lambda frame, result: self._results.put((frame, result)),
                self._write_jsonl if self.jsonl is not None else None,
                self._stop_inference,
            )
            for n, models in enumerate(self.workers)
        ]
        resumed = 0
        last_link_stats = self._last_tick = time.monotonic()
        try:
            resumed = self.writer.call(lambda s: s.uninferred_count())
            if resumed:
                log.info("resuming: %d stored frames were not inferred yet", resumed)
            for worker in workers:
                worker.thread.start()
            while not stop.is_set() and not self._failed(workers):
                if self.recording and not self.backlog.wait_for_room(0.05):
                    self._deliver_results()  # paced by inference: read no more for now
                else:
                    self._receive_once()
                now = time.monotonic()
                if now - last_link_stats >= LINK_STATS_EVERY_S:
                    self._record_link_stats()
                    last_link_stats = now
                if now - self._last_tick >= 0.25:
                    self._tick()
                if self.disk is not None and (why := self.disk.low()) is not None:
                    self.stop_reason = why  # the rest is inferred and the study closed
                    log.error("%s", why)
                    break
                if self.source.finished or (done is not None and done.is_set()):
                    self._wait_for_inference(stop, workers)
                    break
        except StorageError as exc:
            self.error = str(exc)
        finally:
            self._finish(workers)
        summary = self.summary()
        summary["resumed_frames"] = resumed
        return summary

    def _failed(self, workers: list[InferenceWorker]) -> bool:
        for worker in workers:
            if worker.error is not None:
                self.error = self.error or worker.error
            elif (
                not worker.thread.is_alive()
                and worker.thread.ident is not None
                and not self.backlog.closed
            ):
                self.error = self.error or f"{worker.thread.name} stopped"
        if self.writer.error is not None:
            self.error = self.error or str(self.writer.error)
        return self.error is not None

    def _wait_for_inference(self, stop: threading.Event, workers: list[InferenceWorker]) -> None:
        """The stream has ended: infer all of it, however long that takes, unless asked
        to stop. Done when nothing is queued, held or deferred in the study."""
        while not stop.is_set() and not self._failed(workers):
            if not len(self.backlog) and not self.deferred.claimed:
                refs = self.deferred.take(1)
                if not refs:
                    break
                self.backlog.put(Work(refs[0], time.monotonic()), live=False)
            stop.wait(0.05)
            self._deliver_results()
            if time.monotonic() - self._last_tick >= 0.25:
                self._tick()

    def _receive_once(self) -> None:
        frames = self.source.poll()
        now = time.monotonic()
        wall_us = time.time_ns() // 1000
        new = []
        for f in frames:
            data = f.data if f.data is not None else _encode(f.image)
            codec = f.codec if f.data is not None else int(Codec.JPEG)
            new.append(
                NewFrame(
                    f.session,
                    f.index,
                    data,
                    codec,
                    f.timestamp_us,
                    f.width,
                    f.height,
                    wall_us,
                    getattr(f, "origin", None),
                )
            )
        ledger = self._settled_ledger()
        # Held before they are committed: a worker looking for deferred frames must not
        # take one that is on its way into the backlog.
        held = [self.deferred.claim((f.session, f.index)) for f in frames]
        refs = self.writer.store(new, ledger) if new or ledger else []
        for f in frames:
            self.source.confirm(f)
        for f, ref, mine in zip(frames, refs, held, strict=True):
            if ref is None:
                if mine:
                    self.deferred.release((f.session, f.index))
                self.stats.count("duplicates")
                continue
            self.stats.count("stored")
            self._enqueue(Work(ref, now, f))
        self._deliver_results()

    def _deliver_results(self) -> None:
        while True:
            try:
                frame, result = self._results.get_nowait()
            except queue.Empty:
                break
            self.source.send_result(frame, result)
        while True:
            try:
                alert = self._alerts.get_nowait()
            except queue.Empty:
                break
            self.source.send_alert(*alert)
        self.source.flush()

    def _enqueue(self, work: Work) -> None:
        skipped = self.backlog.put(work, live=not self.recording)
        if skipped is not None:
            self.deferred.release(skipped.key, deferred=True)
            self.skipped.append(skipped.key)
            self.stats.count("skipped")
            if skipped.frame is not None:  # inferred later for the study, not live
                self._results.put((skipped.frame, Result.none(ResultStatus.SKIPPED)))
        self.stats.gauges["backlog"] = len(self.backlog)

    def _settled_ledger(self) -> list[tuple[int, int, str, str | None]]:
        """Every ledger outcome settled since the last call, in index order."""
        out = []
        for session, ledger in self.source.ledger.sessions.items():
            mark = max(self._persisted.get(session, 0), ledger.start)
            for index, outcome, reason in ledger.settled_since(mark):
                out.append((session, index, outcome.name.lower(), reason))
                mark = index + 1
            self._persisted[session] = mark
        return out

    def _record_link_stats(self) -> None:
        stats = json.dumps(self.source.status())
        stamp = time.time_ns() // 1000
        self.writer.call(lambda s: s.record_link_stats(stamp, stats))

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        self.stats.gauges["backlog"] = len(self.backlog)
        # Taken here, in the thread that owns the link: /stats reads this copy.
        self.link_status = self.source.status()
        if self.on_tick is not None:
            self.on_tick(self)

    def _finish(self, workers: list[InferenceWorker]) -> None:
        """Stop receiving, let inference drain the backlog for at most ``drain_s``."""
        self.backlog.close()
        deadline = time.monotonic() + self.drain_s
        for worker in workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stop_inference.set()
        for worker in workers:
            if worker.thread.is_alive():
                worker.thread.join()
        self._failed(workers)
        try:
            ledger = self._settled_ledger()
            if ledger:
                self.writer.store([], ledger)
            self._record_link_stats()
            self.left = self.writer.call(lambda s: s.uninferred_count())
        except StorageError as exc:
            self.error = self.error or str(exc)
        self.writer.close()
        if self.writer.error is not None:
            self.error = self.error or str(self.writer.error)
        self._reader_db.close()
        if self.error is None:
            # The findings of the last frames, and the last ACKs. After a storage
            # failure nothing more goes out: it could acknowledge what was not stored.
            self._deliver_results()

    # --- the writer thread's call-back and the workers' output ---------------------

    def _committed(self, outcomes: list[Outcome]) -> None:
        now = time.monotonic()
        with self.stats.lock:
            for o in outcomes:
                if o.status == "done":
                    self.stats.latency.add((now - o.received) * 1e3)
                    self.stats.counters["inferred"] += 1
                else:
                    self.stats.counters["failed"] += 1
        for o in outcomes:
            self.deferred.release((o.session, o.index))
        if self.live is not None:
            self.live.committed(outcomes)  # handed over: linked in a thread of its own

    def queue_alert(self, session: int, index: int, alert: Alert) -> None:
        """An event confirmed (from the writer thread): to the recorder with the results."""
        self._alerts.put((session, index, alert))

    def _write_jsonl(self, line: str) -> None:
        with self._jsonl_lock:  # whole lines, whichever worker writes
            if self.jsonl is None:
                return
            try:
                print(line, file=self.jsonl, flush=True)
            except (BrokenPipeError, ValueError, OSError) as exc:
                # The reader of --jsonl went away (``| head``): the study goes on.
                log.warning("findings on standard output stopped: %s", exc)
                self.jsonl = None
                self.stats.count("jsonl_stopped")

    # --- reporting ---------------------------------------------------------------------

    left: int | None = None  # stored frames without an outcome when the run ended
    _cpu_at_start = 0.0
    disk: DiskWatch | None = None  # stops receiving at the disk's reserve
    stop_reason: str | None = None  # why receiving stopped early (not an error of the study)

    def model_figures(self) -> dict[str, dict[str, Any]]:
        """Each model's output so far, by role, for ``/stats``."""
        with self.stats.lock:
            counters = dict(self.stats.counters)
        return model_figures(self.models, counters)

    def summary(self) -> dict[str, Any]:
        with self.stats.lock:
            counters = dict(self.stats.counters)
            latency = self.stats.latency.summary()
            stages = {name: d.summary() for name, d in self.stats.stages.items()}
        elapsed = time.monotonic() - self.stats.started
        return {
            "frames_stored": counters.get("stored", 0),
            "frames_inferred": counters.get("inferred", 0),
            "frames_failed": counters.get("failed", 0),
            "frames_skipped": counters.get("skipped", 0),
            "frames_undecodable": counters.get("undecodable", 0),
            "frames_not_inferred": self.left if self.left is not None else len(self.backlog),
            "duplicates": counters.get("duplicates", 0),
            # A recording replayed into a study that has its frames: not stored again.
            "frames_already_held": self.source.status().get("already_held", 0),
            "backlog_left": len(self.backlog),
            # each detector's frames with a box, by role (0 for one that found nothing)
            "detection_frames": {
                role: counters.get(DETECTION_FRAMES + role, 0) for role in self.models.detectors
            },
            "elapsed_s": round(elapsed, 2),
            # this process's CPU while running (receiving, storing, inferring, all threads)
            "cpu_s": round(time.process_time() - self._cpu_at_start, 3),
            "fps": round(counters.get("inferred", 0) / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": latency,
            "stage_ms": stages,
            "ledger": dict(self.source.ledger.counts()),
            "models": self.models.describe(),
            "error": self.error,
            "stop_reason": self.stop_reason,
        }


def _encode(image: Image) -> bytes:
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise BadInputError("a decoded frame could not be encoded for the archive")
    return bytes(jpeg.tobytes())
