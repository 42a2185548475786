"""``capsule-edge run`` and ``demo`` end to end: the recorder simulator on a real pty in
its own process, the runtime in the lean environment in another, a real study folder;
on the bundled int8 models (no tensorflow).

Runs end when the simulator exits (everything it sent is acknowledged); a deadline only
guards against a hang. Where inference must be slower than the frames arrive, the test
holds it (an Event) and says when it goes on: no sleeping, whatever this machine's speed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.bundled import models_root
from edge.cli.simulate import spawn_simulator
from edge.frames import decode_image
from edge.models.card import load_card
from edge.runtime import config as settings
from edge.runtime.backlog import Backlog
from edge.runtime.models import Models
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import DirSource
from edge.runtime.status_line import StatusLine
from edge.runtime.study_run import run_study
from edge.study.store import Study
from firmware_bridge.protocol import crc32

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 240
HOLD_S = 30  # a held inference waits this long at most for the test to let it go on
CLASSIFIER = models_root() / "classifier" / "edgecnn" / "int8.tflite"
DETECTOR = models_root() / "detector" / "yolov5s-256" / "int8.tflite"
MODELS = ["--classifier-model", str(CLASSIFIER), "--detector-model", str(DETECTOR)]


def _simulator(python: Path, tmp: Path, count: int, fps: float, *extra: str):
    link = tmp / "recorder.pty"
    sim, _ = spawn_simulator(
        *("--pty", str(link), "--mucosa", "--count", str(count), "--fps", str(fps)),
        *("--log", str(tmp / "truth.json"), "--linger", "60", *extra),
        python=str(python),
        cwd=REPO,
    )
    return sim, link


def _runtime(python: Path, args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [str(python), "-m", "edge.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        **kw,
    )


def _db(study: Path) -> sqlite3.Connection:
    return sqlite3.connect(study / "study.db")


def _check_study_against_truth(study: Path, truth: dict) -> None:
    """Every frame sent is stored once, byte-identical, inferred once, and the ledger
    accounts for every index."""
    sent = {(s, i): crc for s, i, _, crc in truth["frames"]}
    s = Study(study)
    try:
        stored = list(s.frames())
        assert sorted(stored) == sorted(sent)
        for key in stored:
            assert crc32(s.read(*key).data) == sent[key], key
        db = s.db
        outcomes = dict(
            ((se, i), o) for se, i, o in db.execute("SELECT session, idx, outcome FROM ledger")
        )
        assert set(outcomes) == set(sent)
        assert set(outcomes.values()) <= {"delivered", "delivered_after_retransmit"}
        inferred = db.execute("SELECT COUNT(*), SUM(status = 'done') FROM inference").fetchone()
        assert inferred == (len(sent), len(sent))
        per_frame = db.execute(
            "SELECT COUNT(*) FROM findings WHERE model = 'classifier' GROUP BY session, idx"
        ).fetchall()
        assert len(per_frame) == len(sent) and {n for (n,) in per_frame} == {1}
    finally:
        s.close()


def test_run_on_a_pty_stores_infers_and_answers(lean_python: Path, tmp_path: Path):
    sim, link = _simulator(lean_python, tmp_path, 40, 0)
    study = tmp_path / "study"
    run = _runtime(
        lean_python,
        [
            *("--source", f"serial://{link}", "--study", str(study), "--http-port", "0"),
            *("-q", "--jsonl", *MODELS),
        ],
    )
    assert run.stderr is not None and run.stdout is not None
    url = None
    while url is None:
        line = run.stderr.readline()
        assert line, "the runtime ended before it started serving"
        if "stats http://" in line:
            url = line.rsplit(" ", 1)[-1].strip().removesuffix("/stats")
    assert sim.wait(timeout=DEADLINE_S) == 0
    lines = [json.loads(run.stdout.readline()) for _ in range(40)]  # every frame, as JSON
    deadline = time.monotonic() + 30
    while True:  # the figures are refreshed 4 times a second: wait for the last frame
        stats = json.loads(urllib.request.urlopen(f"{url}/stats", timeout=10).read())
        settled = stats["link"].get("ledger") == {"DELIVERED": 40}
        if (stats["counters"].get("inferred") == 40 and settled) or time.monotonic() > deadline:
            break
    metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err

    truth = json.loads((tmp_path / "truth.json").read_text())
    _check_study_against_truth(study, truth)
    assert sorted((x["session"], x["index"]) for x in lines) == [(1, i) for i in range(40)]
    assert stats["counters"]["stored"] == 40 and stats["counters"]["inferred"] == 40
    assert stats["link"]["ledger"] == {"DELIVERED": 40}
    assert 'capsule_edge_frames_total{state="stored"} 40' in metrics
    assert "capsule_edge_stage_ms" in metrics and 'stage="detector"' in metrics
    # RESULTs reached the recorder and say what the study holds.
    db = _db(study)
    labels = load_card(CLASSIFIER).labels
    for key, (class_id, _, _) in truth["results"].items():
        session, index = map(int, key.split(":"))
        (label,) = db.execute(
            "SELECT label FROM findings WHERE session=? AND idx=? AND model='classifier'",
            (session, index),
        ).fetchone()
        assert label == labels[class_id]
    assert len(truth["results"]) >= 20
    assert "Traceback" not in err


def test_sigkill_at_random_moments_then_resume_loses_nothing(lean_python: Path, tmp_path: Path):
    count = 240
    sim, link = _simulator(lean_python, tmp_path, count, 60)
    study = tmp_path / "study"
    args = [
        *("--source", f"serial://{link}", "--study", str(study), "--no-http", "-q", "--jsonl"),
        *MODELS,
    ]
    rng = random.Random(5)
    kills = 0
    while sim.poll() is None and kills < 4:
        run = _runtime(lean_python, args)
        assert run.stdout is not None
        # Kill after a random number of inferred frames: mid-frame, mid-commit, anywhere.
        for _ in range(rng.randrange(5, 40)):
            if not run.stdout.readline():
                break
        run.send_signal(signal.SIGKILL)
        run.wait()
        kills += 1
    run = _runtime(lean_python, args)
    assert sim.wait(timeout=DEADLINE_S) == 0
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert kills >= 3
    _check_study_against_truth(study, json.loads((tmp_path / "truth.json").read_text()))


def _frame_folder(tiny_dataset: Path, tmp_path: Path, n: int) -> Path:
    """``n`` JPEG frames, the tiny dataset's taken in turn, as 000.jpg, 001.jpg, ..."""
    frames = tmp_path / "frames"
    frames.mkdir()
    files = sorted(tiny_dataset.rglob("*.jpg"))
    for i in range(n):
        (frames / f"{i:03d}.jpg").write_bytes(files[i % len(files)].read_bytes())
    return frames


def _classifier_only() -> settings.Config:
    return settings.load(None, {"classifier.model": str(CLASSIFIER), "detector.enabled": False})


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
    frames = _frame_folder(tiny_dataset, tmp_path, n)
    go = threading.Event()  # the reader waits for room, or has read everything
    models = HeldModels.held(_classifier_only(), go)
    study = Study(tmp_path / "study")
    source = HeldFirstDir(frames, models, go)
    runtime = Runtime(
        source, study, models, backlog=limit, policy=policy, drain_s=600, recording=recording
    )
    backlog = runtime.backlog = WatchedBacklog(limit, policy, go)
    summary = runtime.run(threading.Event())
    study.close()
    models.close()

    db = _db(tmp_path / "study")
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
    frames = _frame_folder(tiny_dataset, tmp_path, 20)
    stop, done = threading.Event(), threading.Event()
    models = HeldModels.held(_classifier_only(), done)
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
    frames = _frame_folder(tiny_dataset, tmp_path, 40)
    config = _classifier_only()
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
    db = _db(tmp_path / "study")
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


def _run_main(args: list[str], capsys) -> tuple[int, str]:
    from edge.cli import main

    code = main(["run", *args])
    return code, capsys.readouterr().err


def _unknown_key(tmp: Path) -> tuple[list[str], str]:
    (cfg := tmp / "bad.toml").write_text("[pipeline]\nbacklogg = 3\n")
    return ["--config", str(cfg)], f"{cfg}: unknown key pipeline.backlogg"


def _negative_workers(tmp: Path) -> tuple[list[str], str]:
    return ["--workers", "-1"], "command line: pipeline.workers must be between 0 and 64, got -1"


def _tiny_chunk(tmp: Path) -> tuple[list[str], str]:
    (cfg := tmp / "bad.toml").write_text("[link]\nchunk = 8\n")
    return ["--config", str(cfg)], f"{cfg}: link.chunk must be 0 (by transport) or 16-65535, got 8"


def _missing_model(tmp: Path) -> tuple[list[str], str]:
    missing = tmp / "nope.tflite"
    return ["--classifier-model", str(missing)], f"[classifier] model {missing}: no such file"


def _classifier_as_detector(tmp: Path) -> tuple[list[str], str]:
    card = f"{CLASSIFIER}.card.json"
    return ["--detector-model", str(CLASSIFIER)], f"{card}: task is 'classification', not detection"


def _tampered_model(tmp: Path) -> tuple[list[str], str]:
    tampered = tmp / "tampered" / CLASSIFIER.name
    tampered.parent.mkdir()
    card = Path(f"{CLASSIFIER}.card.json")
    (tampered.parent / card.name).write_bytes(card.read_bytes())
    data = bytearray(CLASSIFIER.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    expected = json.loads(card.read_text())["sha256"]
    return (
        ["--no-detector", "--classifier-model", str(tampered)],
        f"{tampered}: sha256 {actual[:12]}… does not match its card ({expected[:12]}…)",
    )


@pytest.mark.parametrize(
    "misuse",
    [
        _unknown_key,
        _negative_workers,
        _tiny_chunk,
        _missing_model,
        _classifier_as_detector,
        _tampered_model,
    ],
)
def test_bad_settings_and_models_are_one_line_errors(
    misuse: Callable[[Path], tuple[list[str], str]], tmp_path: Path, capsys
):
    args, message = misuse(tmp_path)
    study = ["--study", str(tmp_path / "s"), "--no-http", "-q"]
    code, err = _run_main(["--source", f"dir://{tmp_path}", *study, *args], capsys)
    assert (code, err) == (2, f"capsule-edge: {message}\n")


def test_busy_and_missing_serial_ports_are_clear(tmp_path: Path, capsys):
    import serial

    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = serial.Serial(path, exclusive=True)
    study = tmp_path / "s"
    try:
        args = ["--study", str(study), "--no-http", "-q", "--no-detector"]
        code, err = _run_main(["--source", f"serial://{path}", *args], capsys)
        assert (code, err) == (
            2,
            f"capsule-edge: {path}: cannot open (busy: another program has it open)\n",
        )
        code, err = _run_main(["--source", "serial:///dev/ttyNOPE7", *args], capsys)
        assert code == 2 and err.startswith("capsule-edge: /dev/ttyNOPE7: cannot open (")
        assert err.count("\n") == 1 and "No such file or directory" in err
        assert not study.exists()  # the port is opened first: nothing was created
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_a_silent_fall_back_to_the_cpu_is_warned_about_and_recorded(
    tiny_dataset: Path, tmp_path: Path, capsys
):
    import openvino as ov

    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an NPU: AUTO:NPU,CPU would use it")
    frames = _frame_folder(tiny_dataset, tmp_path, 4)
    cfg = tmp_path / "npu.toml"
    cfg.write_text(
        f'[classifier]\nbackend = "openvino"\nmodel = "{CLASSIFIER.with_suffix(".xml")}"\n'
        'device = "AUTO:NPU,CPU"\n'
    )
    study = tmp_path / "s"
    args = ["--config", str(cfg), "--study", str(study), "--no-detector", "--no-http", "-q"]
    code, err = _run_main(["--source", f"dir://{frames}", *args], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "classifier" in warning[0] and "no NPU" in warning[0]
    (record,) = _db(study).execute("SELECT settings FROM runs").fetchall()
    described = json.loads(record[0])["models"]["classifier"]
    assert "no NPU" in described["fallback"] and "CPU" in described["device"]


CORES = 3  # what this machine is said to have below, whatever it has


@pytest.mark.parametrize(
    ("recording", "given", "workers", "setting", "threads", "why"),
    [
        # A recording: one single-threaded worker per core.
        (True, {}, CORES, 1, 1, "chosen for a recording"),
        # Threads set by hand are kept, with fewer workers to match.
        (True, {"classifier.threads": CORES}, 1, CORES, CORES, "chosen for a recording"),
        # A live source: one worker, every core (threads = 0) on it.
        (False, {}, 1, 0, CORES, "chosen for a live source"),
        # A number of workers set is what runs, whatever the source.
        (True, {"pipeline.workers": 2}, 2, 0, CORES, "as set on the command line"),
    ],
)
def test_workers_and_threads_are_chosen_for_the_source(
    tiny_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recording: bool,
    given: dict,
    workers: int,
    setting: int,
    threads: int,
    why: str,
):
    monkeypatch.setattr(os, "cpu_count", lambda: CORES)
    frames = _frame_folder(tiny_dataset, tmp_path, 6)
    study = tmp_path / "s"
    overrides = {"source": f"dir://{frames}", "study": str(study), "http.enabled": False}
    overrides |= {"classifier.model": str(CLASSIFIER), "detector.enabled": False, **given}
    said = io.StringIO()
    summary = run_study(
        settings.load(None, overrides),
        threading.Event(),
        status=False,
        announce=said,
        recording=recording,
    )
    assert summary["error"] is None and summary["frames_inferred"] == 6
    lines = said.getvalue().splitlines()
    assert f"capsule-edge: {workers} inference worker(s), {why}" in lines
    (described,) = [line for line in lines if line.startswith("capsule-edge: classifier ")]
    assert described.endswith(f", {threads} thread(s)")
    (record,) = _db(study).execute("SELECT settings FROM runs").fetchall()
    chosen = json.loads(record[0])["settings"]
    assert (chosen["pipeline.workers"], chosen["classifier.threads"]) == (workers, setting)


def test_a_full_disk_stops_cleanly_and_keeps_what_was_stored(
    lean_python: Path, tiny_dataset: Path, tmp_path: Path
):
    frames = tmp_path / "frames"
    frames.mkdir()
    files = sorted(tiny_dataset.rglob("*.jpg"))
    for i in range(400):
        (frames / f"{i:04d}.jpg").write_bytes(files[i % len(files)].read_bytes())
    limit = 1 << 20  # every file this process writes stops growing at 1 MiB

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    study = tmp_path / "study"
    run = _runtime(
        lean_python,
        [
            *("--source", f"dir://{frames}", "--study", str(study), "--no-http", "-q"),
            *("--no-detector", "--classifier-model", str(CLASSIFIER)),
        ],
        preexec_fn=small_disk,
    )
    _, err = run.communicate(timeout=DEADLINE_S)
    assert run.returncode == 1, err
    assert "cannot store" in err and "Traceback" not in err
    s = Study(study)  # reopens: what was committed is whole
    try:
        kept = list(s.frames())
        assert kept
        for key in kept:
            assert s.read(*key).data == (frames / f"{key[1]:04d}.jpg").read_bytes()
    finally:
        s.close()


# The demo told this machine has CORES cores (the simulator it starts is told nothing).
DEMO = (
    f"import os, sys; os.cpu_count = lambda: {CORES}; "
    "from edge.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("with_data", [False, True])
def test_demo_streams_over_a_pty_and_writes_its_summary(
    lean_python: Path, tiny_dataset: Path, tmp_path: Path, with_data: bool
):
    out = tmp_path / "demo"
    frames = ["--frames", str(tiny_dataset)] if with_data else []
    # No drain: when the recorder has sent everything, the demo still infers it all.
    # With data, a set chunk size and workers; without, what an unthrottled demo chooses.
    config = tmp_path / "no-drain.toml"
    config.write_text("[pipeline]\ndrain_s = 0.0\n" + ("[link]\nchunk = 4096\n" * with_data))
    layout = ["--workers", "2", "--threads", "1"] if with_data else []
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    demo = subprocess.run(
        [
            *(str(lean_python), "-c", DEMO, "demo", "--count", "30", "--fps", "0"),
            *("--ber", "1e-5", "--seed", "3", "--out", str(out), "-q", *frames),
            *(*layout, "--config", str(config)),
            *MODELS,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no ../shared/data from here: synthetic frames unless --frames
        timeout=DEADLINE_S,
    )
    wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_cpu_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    assert demo.returncode == 0, demo.stderr
    said = f"frames from {tiny_dataset}" if with_data else "synthetic frames"
    assert said in demo.stderr and "Traceback" not in demo.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_sent"] == summary["frames_stored"] == 30
    assert summary["frames_lost"] == {} and summary["corrupt_delivered"] == 0
    assert summary["frames_inferred"] + summary["frames_skipped"] == 30
    assert summary["frames_not_inferred"] == 0
    # Both ends took the configured chunk size (the simulator offers what the runtime takes).
    (link,) = (
        _db(out / "study")
        .execute("SELECT stats FROM link_stats ORDER BY rowid DESC LIMIT 1")
        .fetchone()
    )
    assert json.loads(link)["chunk"] == (4096 if with_data else 16384)
    # An unthrottled demo is a recording: one single-threaded worker per core.
    workers, why = (
        (2, "as set on the command line") if with_data else (CORES, "chosen for a recording")
    )
    lines = demo.stderr.splitlines()
    assert f"capsule-edge: {workers} inference worker(s), {why}" in lines
    for role in ("classifier", "detector"):
        (line,) = [x for x in lines if x.startswith(f"capsule-edge: {role} ")]
        assert line.endswith(", 1 thread(s)")
    # The figures agree with the study and with the clock: the run lasted no longer than
    # the demo, and no less than from its first frame's arrival to its last findings (the
    # study's times); a frame's latency (until its findings were committed) is no less
    # than the study's time to its findings.
    rows = (
        _db(out / "study")
        .execute("SELECT received_us, inferred_ms FROM frames JOIN inference USING (session, idx)")
        .fetchall()
    )
    assert len(rows) == 30
    span_s = max(us / 1e6 + ms / 1e3 for us, ms in rows) - min(us for us, _ in rows) / 1e6
    elapsed_s = summary["frames_inferred"] / summary["fps"]
    assert span_s <= elapsed_s * 1.01 and elapsed_s <= wall_s
    ready_ms = sorted(ms for _, ms in rows)
    latency = summary["latency_ms"]
    assert set(latency) == {"p50", "p95", "p99"}
    assert latency["p50"] >= ready_ms[14 - 1] * 0.98  # histogram bins are 1.9 % wide
    assert latency["p99"] >= ready_ms[28 - 1] * 0.98 and latency["p99"] <= wall_s * 1e3
    # The recorder's CPU time is part of what this test's child processes took.
    assert 0 < summary["recorder_cpu_s"] <= children_cpu_s + 0.01
    _check_study_against_truth(out / "study", json.loads((out / "recorder.json").read_text()))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_shows_the_study_as_it_goes(tiny_dataset: Path, tmp_path: Path):
    frames = _frame_folder(tiny_dataset, tmp_path, 10)
    models = Models.open(_classifier_only())
    study = Study(tmp_path / "study")
    runtime = Runtime(DirSource(frames), study, models)
    runtime.run(threading.Event())
    study.close()
    models.close()
    log, terminal = io.StringIO(), _Terminal()
    for stream in (log, terminal):
        StatusLine(stream, enabled=True)(runtime)
    line = log.getvalue()
    assert line.endswith("\n") and "10 stored  10 inferred" in line and "skipped 0" in line
    assert f"class {runtime.stats.latest_class[0]}" in line
    assert terminal.getvalue() == "\r\033[K" + line.rstrip("\n")  # rewritten in place
    quiet = io.StringIO()
    StatusLine(quiet, enabled=False)(runtime)
    assert quiet.getvalue() == ""
