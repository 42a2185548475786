"""``capsule-edge run`` and ``demo`` end to end: the recorder simulator on a real pty in
its own process, the runtime in the lean environment in another, a real study folder.

Runs end when the simulator exits (everything it sent is acknowledged); a deadline only
guards against a hang.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import ClassVar

import pytest

from edge.frames import decode_image
from edge.models.card import load_card
from edge.runtime import config as settings
from edge.runtime.models import Models
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import DirSource
from edge.runtime.status_line import StatusLine
from edge.study.store import Study
from firmware_bridge.protocol import crc32

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 240


def _models(tiny_run: Path, tiny_detector: Path) -> list[str]:
    return [
        *("--classifier-model", str(tiny_run / "int8.tflite")),
        *("--detector-model", str(tiny_detector / "int8.tflite")),
    ]


def _simulator(python: Path, tmp: Path, count: int, fps: float, *extra: str):
    link = tmp / "recorder.pty"
    sim = subprocess.Popen(
        [
            *(str(python), "-m", "edge.cli", "simulate", "--pty", str(link), "--mucosa"),
            *("--count", str(count), "--fps", str(fps), "--log", str(tmp / "truth.json")),
            *("--linger", "60", *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert sim.stdout is not None and sim.stdout.readline()  # the pty is there
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


def test_run_on_a_pty_stores_infers_and_answers(
    lean_python: Path, tiny_run: Path, tiny_detector: Path, tmp_path: Path
):
    sim, link = _simulator(lean_python, tmp_path, 40, 0)
    study = tmp_path / "study"
    run = _runtime(
        lean_python,
        [
            *("--source", f"serial://{link}", "--study", str(study), "--http-port", "0"),
            *("-q", "--jsonl", *_models(tiny_run, tiny_detector)),
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
    labels = load_card(tiny_run / "int8.tflite").labels
    for key, (class_id, _, _) in truth["results"].items():
        session, index = map(int, key.split(":"))
        (label,) = db.execute(
            "SELECT label FROM findings WHERE session=? AND idx=? AND model='classifier'",
            (session, index),
        ).fetchone()
        assert label == labels[class_id]
    assert len(truth["results"]) >= 20
    assert "Traceback" not in err


def test_sigkill_at_random_moments_then_resume_loses_nothing(
    lean_python: Path, tiny_run: Path, tiny_detector: Path, tmp_path: Path
):
    count = 240
    sim, link = _simulator(lean_python, tmp_path, count, 60)
    study = tmp_path / "study"
    args = [
        *("--source", f"serial://{link}", "--study", str(study), "--no-http", "-q", "--jsonl"),
        *_models(tiny_run, tiny_detector),
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


def _classifier_only(tiny_run: Path) -> settings.Config:
    return settings.load(
        None, {"classifier.model": str(tiny_run / "int8.tflite"), "detector.enabled": False}
    )


class SlowModels(Models):
    """The real models, made slower than the frames arrive (a slow device)."""

    delay_s = 0.03

    def infer(self, image):
        time.sleep(self.delay_s)
        return super().infer(image)


@pytest.mark.parametrize(
    ("recording", "policy"), [(True, "skip-oldest"), (False, "skip-oldest"), (False, "skip-newest")]
)
def test_slow_inference_never_costs_a_frame(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path, recording: bool, policy: str
):
    """A recording waits for inference; a live source's frames may go past a full
    backlog, and are inferred once the backlog runs dry: none is skipped for good."""
    frames = _frame_folder(tiny_dataset, tmp_path, 60)
    models = SlowModels.open(_classifier_only(tiny_run))
    study = Study(tmp_path / "study")
    runtime = Runtime(
        DirSource(frames),
        study,
        models,
        backlog=8,
        policy=policy,
        drain_s=600,
        recording=recording,
    )
    summary = runtime.run(threading.Event())
    study.close()
    models.close()

    db = _db(tmp_path / "study")
    assert db.execute("SELECT COUNT(*) FROM frames").fetchone() == (60,)
    order = [i for i, s in db.execute("SELECT idx, status FROM inference ORDER BY rowid")]
    statuses = {s for (s,) in db.execute("SELECT status FROM inference")}
    assert sorted(order) == list(range(60)) and statuses == {"done"}  # each once, all done
    assert summary["frames_inferred"] == 60 and summary["frames_not_inferred"] == 0
    went_past = sorted(i for _, i in runtime.skipped)
    assert summary["frames_skipped"] == len(went_past)
    if recording:
        assert went_past == []  # read at inference's pace
        assert order == list(range(60))
        return
    assert went_past  # the source did not wait: the backlog overflowed
    assert set(order[-len(went_past) :]) == set(went_past)  # inferred once it ran dry
    if policy == "skip-oldest":
        assert 59 not in went_past  # the newest frames went first
    else:
        assert 0 not in went_past  # the oldest frames went first, in order


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


def test_a_stream_said_to_be_done_is_inferred_to_its_end(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path
):
    frames = _frame_folder(tiny_dataset, tmp_path, 20)
    models = SlowModels.open(
        _classifier_only(tiny_run)
    )  # 20 frames x 30 ms: still inferring when it ends
    study = Study(tmp_path / "study")
    stop, done = threading.Event(), threading.Event()
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
    assert summary["backlog_left"] == 0


class RecordingModels(SlowModels):
    """The real models, slow, noting which worker thread inferred which frame."""

    ran_on: ClassVar[list[str]] = []

    def infer(self, image):
        self.ran_on.append(threading.current_thread().name)
        return super().infer(image)


def test_workers_share_the_backlog_and_infer_each_frame_once(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path
):
    frames = _frame_folder(tiny_dataset, tmp_path, 40)
    config = _classifier_only(tiny_run)
    workers = [RecordingModels.open(config) for _ in range(3)]
    reference = Models.open(config)
    study = Study(tmp_path / "study")
    out = io.StringIO()
    runtime = Runtime(DirSource(frames), study, workers, backlog=1000, jsonl=out, drain_s=600)
    summary = runtime.run(threading.Event())
    study.close()
    for models in workers:
        models.close()

    assert summary["frames_inferred"] == 40 and summary["frames_skipped"] == 0
    assert len(set(RecordingModels.ran_on)) == 3  # every worker took frames
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


def test_bad_settings_and_models_are_one_line_errors(
    tiny_run: Path, tiny_detector: Path, tmp_path: Path, capsys
):
    frames = f"dir://{tmp_path}"
    study = ["--study", str(tmp_path / "s"), "--no-http", "-q"]
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[pipeline]\nbacklogg = 3\n")
    code, err = _run_main(["--source", frames, "--config", str(cfg), *study], capsys)
    assert code == 2 and "unknown key pipeline.backlogg" in err

    code, err = _run_main(["--source", frames, *study, "--workers", "-1"], capsys)
    assert code == 2 and "pipeline.workers" in err and "between 0 and 64" in err

    cfg.write_text("[link]\nchunk = 8\n")
    code, err = _run_main(["--source", frames, "--config", str(cfg), *study], capsys)
    assert code == 2 and "link.chunk" in err and "16-65535" in err

    code, err = _run_main(
        ["--source", frames, *study, "--classifier-model", str(tmp_path / "nope.tflite")], capsys
    )
    assert code == 2 and "nope.tflite: no such file" in err

    wrong_task = ["--detector-model", str(tiny_run / "int8.tflite")]
    code, err = _run_main(["--source", frames, *study, *wrong_task], capsys)
    assert code == 2 and "not detection" in err

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for f in ("int8.tflite", "int8.tflite.card.json"):
        (tampered / f).write_bytes((tiny_run / f).read_bytes())
    data = bytearray((tampered / "int8.tflite").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "int8.tflite").write_bytes(bytes(data))
    code, err = _run_main(
        [
            "--source",
            frames,
            *study,
            "--no-detector",
            "--classifier-model",
            str(tampered / "int8.tflite"),
        ],
        capsys,
    )
    assert code == 2 and "does not match its card" in err
    for message in (err,):
        assert "Traceback" not in message and len(message.strip().splitlines()) == 1


def test_busy_and_missing_serial_ports_are_clear(tiny_run: Path, tmp_path: Path, capsys):
    import serial

    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = serial.Serial(path, exclusive=True)
    try:
        args = [
            "--study",
            str(tmp_path / "s"),
            "--no-http",
            "-q",
            "--no-detector",
            "--classifier-model",
            str(tiny_run / "int8.tflite"),
        ]
        code, err = _run_main(["--source", f"serial://{path}", *args], capsys)
        assert code == 2 and "busy" in err
        code, err = _run_main(["--source", "serial:///dev/ttyNOPE7", *args], capsys)
        assert code == 2 and "/dev/ttyNOPE7: cannot open" in err
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_a_silent_fall_back_to_the_cpu_is_warned_about_and_recorded(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
):
    import openvino as ov

    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an NPU: AUTO:NPU,CPU would use it")
    frames = _frame_folder(tiny_dataset, tmp_path, 4)
    cfg = tmp_path / "npu.toml"
    cfg.write_text(
        f'[classifier]\nbackend = "openvino"\nmodel = "{tiny_run / "int8.xml"}"\n'
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


def test_a_recording_is_read_by_one_single_threaded_worker_per_core(
    tiny_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
):
    frames = _frame_folder(tiny_dataset, tmp_path, 6)
    study = tmp_path / "s"
    args = ["--study", str(study), "--no-detector", "--no-http", "-q"]
    args += ["--classifier-model", str(tiny_run / "int8.tflite")]
    code, err = _run_main(["--source", f"dir://{frames}", *args], capsys)
    assert code == 0, err
    workers = os.cpu_count() or 1
    assert f"{workers} inference worker(s), chosen for a recording" in err
    (record,) = _db(study).execute("SELECT settings FROM runs").fetchall()
    chosen = json.loads(record[0])["settings"]
    assert chosen["pipeline.workers"] == workers and chosen["classifier.threads"] == 1
    assert _db(study).execute(
        "SELECT count(*) FROM inference WHERE status = 'done'"
    ).fetchone() == (6,)


def test_a_full_disk_stops_cleanly_and_keeps_what_was_stored(
    lean_python: Path, tiny_run: Path, tiny_dataset: Path, tmp_path: Path
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
            *("--no-detector", "--classifier-model", str(tiny_run / "int8.tflite")),
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


@pytest.mark.parametrize("with_data", [False, True])
def test_demo_streams_over_a_pty_and_writes_its_summary(
    lean_python: Path,
    tiny_run: Path,
    tiny_detector: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    with_data: bool,
):
    out = tmp_path / "demo"
    frames = ["--frames", str(tiny_dataset)] if with_data else []
    # No drain: when the recorder has sent everything, the demo still infers it all.
    # With data, a set chunk size and workers; without, what an unthrottled demo chooses.
    config = tmp_path / "no-drain.toml"
    config.write_text("[pipeline]\ndrain_s = 0.0\n" + ("[link]\nchunk = 4096\n" * with_data))
    layout = ["--workers", "2", "--threads", "1"] if with_data else []
    demo = subprocess.run(
        [
            *(str(lean_python), "-m", "edge.cli", "demo", "--count", "30", "--fps", "0"),
            *("--ber", "1e-5", "--seed", "3", "--out", str(out), "-q", *frames),
            *(*layout, "--config", str(config)),
            *_models(tiny_run, tiny_detector),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no ../shared/data from here: synthetic frames unless --frames
        timeout=DEADLINE_S,
    )
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
    if not with_data:
        workers = os.cpu_count() or 1
        assert f"{workers} inference worker(s), chosen for a recording" in demo.stderr
    assert summary["fps"] > 0 and summary["recorder_cpu_s"] > 0
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    _check_study_against_truth(out / "study", json.loads((out / "recorder.json").read_text()))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_shows_the_study_as_it_goes(tiny_run: Path, tiny_dataset: Path, tmp_path: Path):
    frames = _frame_folder(tiny_dataset, tmp_path, 10)
    models = Models.open(_classifier_only(tiny_run))
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
