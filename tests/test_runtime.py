"""``capsule-edge run`` and ``demo`` end to end: the recorder simulator on a real pty in
its own process, the runtime in the lean environment in another, a real study folder;
on the bundled int8 models (no tensorflow).

Runs end when the simulator exits (everything it sent is acknowledged); a deadline only
guards against a hang. Where inference must be slower than the frames arrive, the test
holds it (an Event) and says when it goes on: no sleeping, whatever this machine's speed.
"""

from __future__ import annotations

import io
import json
import random
import resource
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from edge.cli.simulate import spawn_simulator
from edge.models.card import load_card
from edge.runtime.models import Models
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import DirSource
from edge.runtime.status_line import StatusLine
from edge.study.store import Study
from firmware_bridge.protocol import crc32
from tests.runtime_helpers import (
    CLASSIFIER,
    CORES,
    MODELS,
    classifier_only,
    frame_folder,
    study_db,
)

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 240


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
    db = study_db(study)
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
        study_db(out / "study")
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
        study_db(out / "study")
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
    frames = frame_folder(tiny_dataset, tmp_path, 10)
    models = Models.open(classifier_only())
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
