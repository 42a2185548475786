"""The backlog in the runtime, in process: inference held by an Event (so slower than the
frames arrive, whatever this machine's speed), recordings that never skip, live sources
whose skipped frames are inferred later, workers that share one backlog."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from edge.frames import decode_image
from edge.runtime import config as settings
from edge.runtime.backlog import Backlog
from edge.runtime.models import Models
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import DirSource
from edge.study.store import Study
from tests.runtime_helpers import (
    classifier_only,
    frame_folder,
    study_db,
)

HOLD_S = 30  # a held inference waits this long at most for the test to let it go on


class HeldModels(Models):
    """The real models, whose inference waits until ``go`` is set: the test, not this
    machine's speed, decides when frames are inferred. ``inferring`` is set once a
    frame is held."""

    go: threading.Event
    inferring: threading.Event

    @classmethod
    def held(cls, config: settings.Config, go: threading.Event) -> HeldModels:
        models = cls.open(config)
        assert isinstance(models, HeldModels)
        models.go, models.inferring = go, threading.Event()
        return models

    def infer(self, image):
        self.inferring.set()
        if not self.go.wait(HOLD_S):
            raise TimeoutError("the test never let inference go on")
        return super().infer(image)


class HeldFirstDir(DirSource):
    """A folder whose second frame is read only once the first is held in inference,
    and which sets ``read_all`` once every file was read."""

    def __init__(self, folder: Path, models: HeldModels, read_all: threading.Event) -> None:
        super().__init__(folder)
        self.models = models
        self.read_all = read_all
        self.sent = 0

    def poll(self):
        if self.sent == 1:
            assert self.models.inferring.wait(HOLD_S), "the first frame was never inferred"
        frames = super().poll()
        self.sent += len(frames)
        return frames

    @property
    def finished(self) -> bool:
        if super().finished:
            self.read_all.set()
        return super().finished


class WatchedBacklog(Backlog):
    """The runtime's backlog, noting whether the reader waited for room in it (and then
    setting ``go``) and the most frames it held."""

    def __init__(self, limit: int, policy: str, go: threading.Event) -> None:
        super().__init__(limit, policy)
        self.go = go
        self.waited = False
        self.most = 0

    def put(self, work, *, live=True):
        skipped = super().put(work, live=live)
        self.most = max(self.most, len(self))
        return skipped

    def wait_for_room(self, timeout: float) -> bool:
        if len(self) >= self.limit:
            self.waited = True
            self.go.set()
        return super().wait_for_room(timeout)


@pytest.mark.parametrize(
    ("recording", "policy"), [(True, "skip-oldest"), (False, "skip-oldest"), (False, "skip-newest")]
)
def test_slow_inference_never_costs_a_frame(
    tiny_dataset: Path, tmp_path: Path, recording: bool, policy: str
):
    """Inference holds the first frame until the source waits for room in the backlog of
    4 (a recording) or has sent all 20 frames (a live one). A recording waits for
    inference; a live source's frames go past the full backlog as its policy says, and
    are inferred once the backlog runs dry: none is skipped for good."""
    n, limit = 20, 4
    frames = frame_folder(tiny_dataset, tmp_path, n)
    go = threading.Event()  # the reader waits for room, or has read everything
    models = HeldModels.held(classifier_only(), go)
    study = Study(tmp_path / "study")
    source = HeldFirstDir(frames, models, go)
    runtime = Runtime(
        source, study, models, backlog=limit, policy=policy, drain_s=600, recording=recording
    )
    backlog = runtime.backlog = WatchedBacklog(limit, policy, go)
    summary = runtime.run(threading.Event())
    study.close()
    models.close()

    db = study_db(tmp_path / "study")
    assert db.execute("SELECT COUNT(*) FROM frames").fetchone() == (n,)
    order = [i for i, s in db.execute("SELECT idx, status FROM inference ORDER BY rowid")]
    statuses = {s for (s,) in db.execute("SELECT status FROM inference")}
    assert sorted(order) == list(range(n)) and statuses == {"done"}  # each once, all done
    assert summary["frames_inferred"] == n and summary["frames_not_inferred"] == 0
    went_past = [i for _, i in runtime.skipped]
    assert summary["frames_skipped"] == len(went_past)
    if recording:  # read at inference's pace: it waited with frame 0 held and 4 queued
        assert backlog.waited and backlog.most == limit
        assert went_past == [] and order == list(range(n))
        return
    assert not backlog.waited and backlog.most == limit  # the source did not wait
    # Frame 0 held, 4 frames waiting (the newest, or the oldest): the other 15 went
    # past, and were inferred once the backlog ran dry.
    waited = [16, 17, 18, 19] if policy == "skip-oldest" else [1, 2, 3, 4]
    assert went_past == sorted(set(range(1, n)) - set(waited))  # in the order they went
    assert order[: 1 + limit] == [0, *waited]
    assert set(order[1 + limit :]) == set(went_past)


class EndlessDir(DirSource):
    """A folder that reads like a link: it never says it is finished itself; ``done``
    is set once all of it was received, as the demo's watcher does when the simulated
    recorder exits."""

    def __init__(self, folder: Path, done: threading.Event) -> None:
        super().__init__(folder)
        self.done = done

    @property
    def finished(self) -> bool:
        if super().finished:
            self.done.set()
        return False


def test_a_stream_said_to_be_done_is_inferred_to_its_end(tiny_dataset: Path, tmp_path: Path):
    """Inference is held until the stream is said to be done: all 20 frames are still
    to be inferred then, and are, with no drain time."""
    frames = frame_folder(tiny_dataset, tmp_path, 20)
    stop, done = threading.Event(), threading.Event()
    models = HeldModels.held(classifier_only(), done)
    study = Study(tmp_path / "study")
    runtime = Runtime(EndlessDir(frames, done), study, models, backlog=100, drain_s=0.0)
    watchdog = threading.Timer(60, stop.set)  # only if `done` were ignored
    watchdog.start()
    try:
        summary = runtime.run(stop, done)
    finally:
        watchdog.cancel()
        study.close()
        models.close()
    assert not stop.is_set()
    assert summary["frames_stored"] == summary["frames_inferred"] == 20
    assert summary["backlog_left"] == 0 and summary["frames_not_inferred"] == 0


class MeetingModels(Models):
    """The real models, noting the threads that inferred with them; the first frame of
    each waits until every worker is inferring one (``meeting``)."""

    meeting: threading.Barrier
    ran_on: list[str]

    @classmethod
    def meet(cls, config: settings.Config, meeting: threading.Barrier) -> MeetingModels:
        models = cls.open(config)
        assert isinstance(models, MeetingModels)
        models.meeting, models.ran_on = meeting, []
        return models

    def infer(self, image):
        if not self.ran_on:
            self.meeting.wait()
        self.ran_on.append(threading.current_thread().name)
        return super().infer(image)


def test_workers_share_the_backlog_and_infer_each_frame_once(tiny_dataset: Path, tmp_path: Path):
    frames = frame_folder(tiny_dataset, tmp_path, 40)
    config = classifier_only()
    meeting = threading.Barrier(3, timeout=HOLD_S)  # three frames inferred at once
    workers = [MeetingModels.meet(config, meeting) for _ in range(3)]
    reference = Models.open(config)
    study = Study(tmp_path / "study")
    out = io.StringIO()
    runtime = Runtime(DirSource(frames), study, workers, backlog=1000, jsonl=out, drain_s=600)
    summary = runtime.run(threading.Event())
    study.close()
    for models in workers:
        models.close()

    assert summary["frames_inferred"] == 40 and summary["frames_skipped"] == 0
    assert not meeting.broken  # all three were inferring at once
    threads = [set(models.ran_on) for models in workers]
    assert all(len(t) == 1 for t in threads) and len(set.union(*threads)) == 3  # one each
    assert sum(len(models.ran_on) for models in workers) == 40
    db = study_db(tmp_path / "study")
    statuses = db.execute("SELECT idx, status FROM inference ORDER BY idx").fetchall()
    assert statuses == [(i, "done") for i in range(40)]  # each frame once
    labels = dict(db.execute("SELECT idx, label FROM findings WHERE model = 'classifier'"))
    assert len(labels) == 40
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # whole lines only
    assert sorted(line["index"] for line in lines) == list(range(40))
    # Each worker's models said what one model alone says of the same frame.
    for index in (0, 13, 39):
        image = decode_image((frames / f"{index:03d}.jpg").read_bytes(), "test")
        assert labels[index] == reference.infer(image).classification.top.label
    reference.close()
