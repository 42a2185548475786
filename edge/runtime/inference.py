"""One inference worker: stored frames from the backlog, read back and checked, decoded,
classified and detected; outcomes to the study writer, RESULTs to the receiving thread.

An exception while inferring one frame records that frame as ``failed`` with the reason
and the worker goes on: a frame is never the end of a study. What ends a worker (its
archive unreadable, say) is reported to the runtime, which stops the study.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge.errors import BadInputError
from edge.frames import decode_image
from edge.preprocess import Image
from edge.reading.appearance import box_feature
from edge.runtime.backlog import Backlog, Deferred, Work
from edge.runtime.models import Inferred, Models
from edge.runtime.sources import SourceFrame
from edge.runtime.stats import DETECTION_BOXES, DETECTION_FRAMES, Stats
from edge.runtime.writer import Outcome, StudyWriter
from edge.study.archive import Reader
from edge.study.errors import CorruptFrameError
from edge.study.store import FrameRef, read_frame
from firmware_bridge.protocol import Box, Codec, Result, ResultStatus

log = logging.getLogger(__name__)

WAIT_S = 0.05  # a worker with nothing to do looks again this often


def decode_frame(ref: FrameRef, data: bytes) -> Image:
    """RGB uint8 pixels of a stored frame; BadInputError if they cannot be had."""
    where = f"frame {ref.session}:{ref.index}"
    if ref.codec in (Codec.JPEG, Codec.PNG):
        return decode_image(data, where)
    if ref.codec in (Codec.RAW_RGB, Codec.RAW_BAYER):
        channels = 3 if ref.codec == Codec.RAW_RGB else 1
        if ref.width * ref.height * channels != len(data) or not ref.width:
            raise BadInputError(
                f"{where}: {len(data)} raw bytes do not make a {ref.width}x{ref.height} frame"
            )
        pixels = np.frombuffer(data, np.uint8)
        if channels == 3:
            return pixels.reshape(ref.height, ref.width, 3)
        bayer = pixels.reshape(ref.height, ref.width)
        return np.asarray(cv2.cvtColor(bayer, cv2.COLOR_BayerRG2RGB), np.uint8)
    raise BadInputError(f"{where}: unknown codec {ref.codec}")


def result_message(inferred: Inferred, models: Models) -> Result:
    """Findings as the recorder's RESULT: the top class and every detector's boxes in frame
    pixels, their class ids in the shared list of box names (``Models.class_names``)."""
    class_id, confidence = 0xFFFF, 0.0
    if inferred.classification is not None:
        top = inferred.classification.top
        class_id, confidence = top.index, top.score
    offsets = models.box_offsets()
    boxes = tuple(
        Box(
            round(d.box.x0),
            round(d.box.y0),
            round(d.box.x1),
            round(d.box.y1),
            d.score,
            offsets[role] + d.class_id,
        )
        for role, d in inferred.boxes()
    )
    return Result(class_id, confidence, boxes)


class InferenceWorker:
    def __init__(
        self,
        name: str,
        models: Models,
        backlog: Backlog,
        deferred: Deferred,
        writer: StudyWriter,
        reader: Reader,
        stats: Stats,
        results: Callable[[SourceFrame, Result], None],
        jsonl: Callable[[str], None] | None,
        stop: threading.Event,
    ) -> None:
        self.models = models
        self.backlog = backlog
        self.deferred = deferred
        self.writer = writer
        self.reader = reader
        self.stats = stats
        self.results = results
        self.jsonl = jsonl
        self.stop = stop
        self.error: str | None = None
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        try:
            wait = WAIT_S
            while not self.stop.is_set():
                work = self.backlog.get(wait)
                if work is None:
                    # Nothing fresh: frames that went past earlier, or a resumed study's
                    # (also while draining: the drain's deadline stops this). Fresh
                    # frames come first, but while deferred ones remain none is waited for.
                    refs = self.deferred.take(1)
                    if not refs and self.backlog.closed:
                        break
                    for ref in refs:
                        self._infer(Work(ref, time.monotonic()))
                    wait = 0.0 if refs else WAIT_S
                    continue
                self._infer(work)
        except Exception as exc:  # what a single frame cannot explain: stop the study
            self.error = f"{self.thread.name} stopped: {type(exc).__name__}: {exc}"
            log.error("%s", self.error)
        finally:
            self.reader.close()

    def _infer(self, work: Work) -> None:
        ref = work.ref
        start = time.perf_counter()
        try:
            data = read_frame(self.reader, ref)
            image = decode_frame(ref, data)
        except (BadInputError, CorruptFrameError) as exc:
            self._failed(work, str(exc), "undecodable", ResultStatus.UNDECODABLE)
            return
        except OSError as exc:
            reason = f"frame {ref.session}:{ref.index}: unreadable ({exc})"
            self._failed(work, reason, "unreadable", ResultStatus.FAILED)
            return
        self.stats.stage("decode", (time.perf_counter() - start) * 1e3)
        try:
            inferred = self.models.infer(image)
        except Exception as exc:  # a backend failing on one frame must not stop the study
            log.warning("frame %d:%d: inference failed: %s", ref.session, ref.index, exc)
            reason = f"inference: {type(exc).__name__}: {exc}"
            self._failed(work, reason, "inference_errors", ResultStatus.FAILED)
            return
        for name, ms in inferred.timings_ms.items():
            self.stats.stage(name, ms)
        findings = inferred.findings()
        features = tuple(  # each box's appearance, for linking it into events
            box_feature(image, (d.box.x0, d.box.y0, d.box.x1, d.box.y1), rgb=True)
            for _, d in inferred.boxes()
        )
        ready_ms = (time.monotonic() - work.received) * 1e3
        self.writer.put(
            Outcome(
                ref.session,
                ref.index,
                "done",
                None,
                ready_ms,
                tuple(findings),
                work.received,
                ref,
                features,
                (int(image.shape[1]), int(image.shape[0])),
            )
        )
        if work.frame is not None:
            self.results(work.frame, result_message(inferred, self.models))
        with self.stats.lock:
            if inferred.classification is not None:
                top = inferred.classification.top
                self.stats.latest_class = (top.label, round(top.score, 3))
                self.stats.counters[f"class_{top.label}"] += 1
            for role, found in inferred.detections.items():
                if found.items:
                    self.stats.counters[f"{DETECTION_FRAMES}{role}"] += 1
                    self.stats.counters[f"{DETECTION_BOXES}{role}"] += len(found.items)
        if self.jsonl is not None:
            line = {
                "session": ref.session,
                "index": ref.index,
                "findings": [
                    {"model": f.model, "label": f.label, "score": round(f.score, 4)}
                    | ({"box": [round(v, 1) for v in f.box]} if f.box else {})
                    for f in findings
                ],
            }
            self.jsonl(json.dumps(line))

    def _failed(self, work: Work, reason: str, counter: str, status: ResultStatus) -> None:
        self.writer.put(Outcome(work.ref.session, work.ref.index, "failed", reason, None))
        self.stats.count(counter)
        if work.frame is not None:  # the recorder hears that no findings are coming
            self.results(work.frame, Result.none(status))
