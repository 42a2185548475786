"""The runtime's pipeline: frames in, stored, inferred, findings out.

    receiving thread (the caller's)                      inference worker(s)
    source.poll -> Study.add -> commit (fsync)           Backlog.get -> decode
      -> ledger outcomes in the same commit                -> classifier, detector
      -> confirm + flush (the ACK goes out)                -> FindingsWriter (grouped)
      -> Backlog.put (bounded; the policy says who         -> RESULT queued for the
         gives way, every skip recorded)                      receiving thread to send

Receiving and storing never wait on inference. The recorder hears nothing (no ACK, and
no ACK moving past a lost or dropped frame) before what it acknowledges is durable, so a
crash loses only what the recorder still holds and will send again. Frames stored but
not inferred when a run ends are inferred first when the study is resumed.

Each inference worker has its own models (an interpreter runs one frame at a time) and
its own database connection. One worker using every core gives the lowest latency per
frame; one worker per core, each single-threaded, gives the most frames per second,
since a small model does not keep several cores busy (``[pipeline] workers``).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import cv2
import numpy as np

from edge.errors import BadInputError, CapsuleEdgeError
from edge.frames import decode_image
from edge.preprocess import Image
from edge.runtime.models import Inferred, Models
from edge.runtime.stats import Stats
from edge.store import FindingsWriter, Study
from firmware_bridge.ledger import Outcome
from firmware_bridge.protocol import Codec, Result
from firmware_bridge.sources import FrameSource, SourceFrame

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.05  # the inference thread stores its findings at least this often
LINK_STATS_EVERY_S = 10.0
JPEG_QUALITY = 95  # frames that arrive decoded (a camera) are archived as JPEG
SKIPS_KEPT = 10_000


class StorageError(CapsuleEdgeError):
    """The study folder cannot take more frames (disk full, read-only, removed)."""


@dataclass
class Work:
    """A stored frame waiting for inference."""

    session: int
    index: int
    codec: int
    width: int
    height: int
    data: bytes
    received: float  # time.monotonic() when it was fully received
    frame: SourceFrame | None = None  # where a RESULT goes back to


class Backlog:
    """Stored frames waiting for inference, at most ``limit``. When it is full the
    policy decides: ``skip-oldest`` lets the oldest waiting frame go (inference stays
    current), ``skip-newest`` refuses the new one (inference lags behind, in order)."""

    def __init__(self, limit: int, policy: str) -> None:
        self.limit = limit
        self.policy = policy
        self._items: deque[Work] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def put(self, work: Work) -> Work | None:
        """Queue ``work``; returns the frame skipped to make room, if any."""
        with self._cond:
            skipped = None
            if len(self._items) >= self.limit:
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
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def decode_frame(work: Work) -> Image:
    """RGB uint8 pixels of a stored frame; BadInputError if they cannot be had."""
    where = f"frame {work.session}:{work.index}"
    if work.codec in (Codec.JPEG, Codec.PNG):
        return decode_image(work.data, where)
    if work.codec in (Codec.RAW_RGB, Codec.RAW_BAYER):
        channels = 3 if work.codec == Codec.RAW_RGB else 1
        if work.width * work.height * channels != len(work.data) or not work.width:
            raise BadInputError(
                f"{where}: {len(work.data)} raw bytes do not make a "
                f"{work.width}x{work.height} frame"
            )
        pixels = np.frombuffer(work.data, np.uint8)
        if channels == 3:
            return pixels.reshape(work.height, work.width, 3)
        bayer = pixels.reshape(work.height, work.width)
        return np.asarray(cv2.cvtColor(bayer, cv2.COLOR_BayerRG2RGB), np.uint8)
    raise BadInputError(f"{where}: unknown codec {work.codec}")


def result_message(inferred: Inferred, models: Models) -> Result:
    """Findings as the recorder's RESULT: the top class and the boxes in frame pixels."""
    class_id, confidence = 0xFFFF, 0.0
    if inferred.classification is not None:
        top = inferred.classification.top
        class_id, confidence = top.index, top.score
    boxes: tuple[tuple[int, int, int, int, float], ...] = ()
    if inferred.detections is not None:
        boxes = tuple(
            (
                round(d.box.x0),
                round(d.box.y0),
                round(d.box.x1),
                round(d.box.y1),
                d.score,
            )
            for d in inferred.detections.items
        )
    return Result(class_id, confidence, boxes)


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
    ) -> None:
        self.source = source
        self.study = study
        # One inference worker per Models: each runs its own frames from the backlog.
        self.workers = [models] if isinstance(models, Models) else list(models)
        if not self.workers:
            raise ValueError("a runtime needs at least one set of models")
        self.models = self.workers[0]  # what the run describes: every worker's are alike
        self.backlog = Backlog(backlog, policy)
        self.drain_s = drain_s
        self.jsonl = jsonl
        self.on_tick = on_tick  # called about every 0.25 s from the receiving thread
        self.stats = Stats()
        # The latest skipped frames (all of them are in the study): bounded, as a slow
        # device may skip hundreds of thousands in a 12-hour study.
        self.skipped: deque[tuple[int, int]] = deque(maxlen=SKIPS_KEPT)
        self.error: str | None = None  # why the run stopped, if not asked to
        self._results: queue.SimpleQueue[tuple[SourceFrame, Result]] = queue.SimpleQueue()
        self._persisted: dict[int, int] = {}  # session -> ledger indices below are stored
        self._stop_inference = threading.Event()
        self._inference_error: str | None = None
        self._jsonl_lock = threading.Lock()
        self._last_tick = 0.0
        self.link_status: dict[str, Any] = {}

    # --- receiving thread ----------------------------------------------------------

    def run(self, stop: threading.Event, done: threading.Event | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set or the source is exhausted (a finite source, or
        ``done`` set by whoever knows the stream has ended); returns the summary. An
        exhausted source is inferred to its end, a stop drains for ``drain_s``."""
        workers = [
            threading.Thread(
                target=self._infer_loop, args=(models,), name=f"inference-{n}", daemon=True
            )
            for n, models in enumerate(self.workers)
        ]
        resumed = 0
        last_link_stats = self._last_tick = time.monotonic()
        try:
            resumed = self._resume()
            for worker in workers:
                worker.start()
            while not stop.is_set() and self._inference_error is None:
                self._receive_once()
                now = time.monotonic()
                if now - last_link_stats >= LINK_STATS_EVERY_S:
                    self._record_link_stats()
                    last_link_stats = now
                if now - self._last_tick >= 0.25:
                    self._tick()
                if self.source.finished or (done is not None and done.is_set()):
                    self._wait_for_inference(stop)
                    break
        except StorageError as exc:
            self.error = str(exc)
        finally:
            self._finish(workers)
        summary = self.summary()
        summary["resumed_frames"] = resumed
        return summary

    def _wait_for_inference(self, stop: threading.Event) -> None:
        """A finite source (a folder, a video file) is read: infer all of it, however
        long that takes, unless asked to stop."""
        while len(self.backlog) and not stop.is_set() and self._inference_error is None:
            stop.wait(0.1)
            self._deliver_results()
            if time.monotonic() - self._last_tick >= 0.25:
                self._tick()

    def _resume(self) -> int:
        """Frames an earlier run stored but did not infer go first."""
        try:
            pending = self.study.uninferred()
            stored_frames = [self.study.read(session, index) for session, index in pending]
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"{self.study.folder}: cannot read the study to resume it ({_why(exc)})"
            ) from None
        for stored in stored_frames:
            session, index = stored.session, stored.index
            work = Work(
                session,
                index,
                stored.codec,
                stored.width,
                stored.height,
                stored.data,
                time.monotonic(),
            )
            self._enqueue(work)
        if pending:
            log.info("resuming: %d stored frames were not inferred yet", len(pending))
        self._commit()
        return len(pending)

    def _receive_once(self) -> None:
        frames = self.source.poll()
        new: list[Work] = []
        now = time.monotonic()
        wall_us = time.time_ns() // 1000
        try:
            for f in frames:
                data = f.data if f.data is not None else _encode(f.image)
                codec = f.codec if f.data is not None else int(Codec.JPEG)
                added = self.study.add(
                    f.session,
                    f.index,
                    data,
                    codec,
                    f.timestamp_us,
                    width=f.width,
                    height=f.height,
                    received_us=wall_us,
                )
                if added:
                    new.append(Work(f.session, f.index, codec, f.width, f.height, data, now, f))
                else:
                    self.stats.count("duplicates")
            self._queue_ledger()
            self._commit()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"{self.study.folder}: cannot store frames ({_why(exc)}); "
                "stopping: the recorder keeps every frame not acknowledged"
            ) from None
        for f in frames:
            self.source.confirm(f)
        self.stats.count("stored", len(new))
        for work in new:
            self._enqueue(work)
        self._deliver_results()

    def _deliver_results(self) -> None:
        while True:
            try:
                frame, result = self._results.get_nowait()
            except queue.Empty:
                break
            self.source.send_result(frame, result)
        self.source.flush()

    def _enqueue(self, work: Work) -> None:
        skipped = self.backlog.put(work)
        if skipped is not None:
            self.study.skip(skipped.session, skipped.index, f"backlog full ({self.backlog.policy})")
            self.skipped.append((skipped.session, skipped.index))
            self.stats.count("skipped")
        self.stats.gauges["backlog"] = len(self.backlog)

    def _commit(self) -> None:
        try:
            self.study.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"{self.study.folder}: cannot store frames ({_why(exc)}); "
                "stopping: the recorder keeps every frame not acknowledged"
            ) from None

    def _queue_ledger(self) -> None:
        """Queue every newly settled ledger outcome for the next commit."""
        for session, ledger in self.source.ledger.sessions.items():
            start = max(self._persisted.get(session, 0), ledger.start)
            mark = start
            outcomes = ledger.outcomes
            for index in range(start, len(outcomes)):
                outcome = outcomes[index]
                if outcome == Outcome.PENDING:
                    break
                self.study.settle(
                    session, index, Outcome(outcome).name.lower(), ledger.reasons.get(index)
                )
                mark = index + 1
            self._persisted[session] = mark

    def _record_link_stats(self) -> None:
        try:
            self.study.record_link_stats(time.time_ns() // 1000, json.dumps(self.source.status()))
        except OSError as exc:
            raise StorageError(
                f"{self.study.folder}: cannot store link statistics ({exc})"
            ) from None

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        self.stats.gauges["backlog"] = len(self.backlog)
        # Taken here, in the thread that owns the link: /stats reads this copy.
        self.link_status = self.source.status()
        if self.on_tick is not None:
            self.on_tick(self)

    def _finish(self, workers: list[threading.Thread]) -> None:
        """Stop receiving, let inference drain the backlog for at most ``drain_s``."""
        self.backlog.close()
        deadline = time.monotonic() + self.drain_s
        for worker in workers:
            if worker.is_alive():
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stop_inference.set()
        for worker in workers:
            if worker.is_alive():
                worker.join()
        if self._inference_error and not self.error:
            self.error = self._inference_error
        try:
            self._queue_ledger()
            self._commit()
            self._record_link_stats()
        except (OSError, sqlite3.Error) as exc:
            self.error = self.error or f"{self.study.folder}: cannot store frames ({_why(exc)})"
        except StorageError as exc:
            self.error = self.error or str(exc)
        if self.error is None:
            # The findings of the last frames, and the last ACKs. After a storage
            # failure nothing more goes out: it could acknowledge what was not stored.
            self._deliver_results()

    # --- inference thread --------------------------------------------------------------

    def _infer_loop(self, models: Models) -> None:
        try:
            writer = FindingsWriter(self.study.folder)
        except Exception as exc:  # sqlite3 and OSError alike: the run cannot go on
            self._inference_error = f"{self.study.folder}: cannot open the study database ({exc})"
            return
        waiting: list[Work] = []  # inferred, not yet committed
        first_pending = 0.0
        try:
            while not self._stop_inference.is_set():
                work = self.backlog.get(COMMIT_EVERY_S)
                if work is None:
                    if waiting:
                        self._store(writer, waiting)
                    if self.backlog.closed and not len(self.backlog):
                        break
                    continue
                self._infer(work, writer, models)
                if not waiting:
                    first_pending = time.monotonic()
                waiting.append(work)
                if not len(self.backlog) or time.monotonic() - first_pending >= COMMIT_EVERY_S:
                    self._store(writer, waiting)
            if waiting:
                self._store(writer, waiting)
        except (OSError, sqlite3.Error) as exc:
            self._inference_error = f"{self.study.folder}: cannot store findings ({_why(exc)})"
        finally:
            writer.db.close()

    def _infer(self, work: Work, writer: FindingsWriter, models: Models) -> None:
        start = time.perf_counter()
        try:
            image = decode_frame(work)
        except BadInputError as exc:
            writer.add(work.session, work.index, "failed", reason=str(exc))
            self.stats.count("undecodable")
            return
        self.stats.stage("decode", (time.perf_counter() - start) * 1e3)
        try:
            inferred = models.infer(image)
        except Exception as exc:  # a backend failing on one frame must not stop the study
            log.warning("frame %d:%d: inference failed: %s", work.session, work.index, exc)
            writer.add(work.session, work.index, "failed", reason=f"inference: {exc}")
            self.stats.count("inference_errors")
            return
        for name, ms in inferred.timings_ms.items():
            self.stats.stage(name, ms)
        findings = inferred.findings()
        ready_ms = (time.monotonic() - work.received) * 1e3
        writer.add(work.session, work.index, "done", inferred_ms=ready_ms, findings=findings)
        if work.frame is not None:
            self._results.put((work.frame, result_message(inferred, models)))
        polyps = len(inferred.detections) if inferred.detections is not None else 0
        with self.stats.lock:
            if inferred.classification is not None:
                top = inferred.classification.top
                self.stats.latest_class = (top.label, round(top.score, 3))
                self.stats.counters[f"class_{top.label}"] += 1
            if polyps:
                self.stats.counters["polyp_frames"] += 1
                self.stats.counters["polyp_boxes"] += polyps
        if self.jsonl is not None:
            line = {
                "session": work.session,
                "index": work.index,
                "findings": [
                    {"model": f.model, "label": f.label, "score": round(f.score, 4)}
                    | ({"box": [round(v, 1) for v in f.box]} if f.box else {})
                    for f in findings
                ],
            }
            with self._jsonl_lock:  # whole lines, whichever worker writes
                print(json.dumps(line), file=self.jsonl, flush=True)

    def _store(self, writer: FindingsWriter, waiting: list[Work]) -> None:
        writer.commit()
        now = time.monotonic()
        with self.stats.lock:
            for work in waiting:
                self.stats.latency.add((now - work.received) * 1e3)
            self.stats.counters["inferred"] += len(waiting)
        waiting.clear()

    # --- reporting ---------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        with self.stats.lock:
            counters = dict(self.stats.counters)
            latency = self.stats.latency.summary()
            stages = {name: d.summary() for name, d in self.stats.stages.items()}
        elapsed = time.monotonic() - self.stats.started
        return {
            "frames_stored": counters.get("stored", 0),
            "frames_inferred": counters.get("inferred", 0),
            "frames_skipped": counters.get("skipped", 0),
            "frames_undecodable": counters.get("undecodable", 0),
            "duplicates": counters.get("duplicates", 0),
            "backlog_left": len(self.backlog),
            "polyp_frames": counters.get("polyp_frames", 0),
            "elapsed_s": round(elapsed, 2),
            "fps": round(counters.get("inferred", 0) / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": latency,
            "stage_ms": stages,
            "ledger": dict(self.source.ledger.counts()),
            "models": self.models.describe(),
            "error": self.error,
        }


def _why(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _encode(image: Image) -> bytes:
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise BadInputError("a decoded frame could not be encoded for the archive")
    return bytes(jpeg.tobytes())
