"""A study outside the happy path: folders that change, recordings replayed with the
defaults, resumes bigger than the backlog, a worker meeting the unexpected, a closed
--jsonl pipe, the demo stopped or misused. Real processes, real files, real SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli.simulate import spawn_simulator
from edge.runtime import config as settings
from edge.runtime.models import Models
from edge.runtime.pipeline import Runtime
from edge.runtime.sources import DirSource
from edge.study.store import Study

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER_ONLY = ["--no-detector", "--no-http", "-q"]
pytestmark = pytest.mark.slow  # the runtime and the demo in processes of their own


def _frames(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), image)
    return folder


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        **kw,
    )


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _rows(study: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(study / "study.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_folder_replayed_after_a_change_adds_its_new_frames(tmp_path: Path):
    frames, study = _frames(tmp_path / "frames", 5), tmp_path / "study"
    first = _cli("run", "--source", f"dir://{frames}", "--study", str(study), *CLASSIFIER_ONLY)
    assert first.returncode == 0, first.stderr
    (frames / "002b.jpg").write_bytes((frames / "000.jpg").read_bytes()[:-2] + b"\xff\xd9")
    _frames(frames, 1, start=3)  # 003.jpg rewritten with other pixels
    run = _cli("run", "--source", f"dir://{frames}", "--study", str(study), *CLASSIFIER_ONLY)
    assert run.returncode == 0, run.stderr
    rows = _rows(study, "SELECT origin, idx FROM frames ORDER BY idx")
    # Five first, then the new file and the changed one, after them, none twice.
    assert [o for o, _ in rows[:5]] == [f"{i:03d}.jpg" for i in range(5)]
    assert sorted(o for o, _ in rows[5:]) == ["002b.jpg", "003.jpg"]
    assert [i for _, i in rows] == list(range(7))
    with Study(study) as s:
        assert s.read(0, 5).data == (frames / "002b.jpg").read_bytes()  # name order
        assert s.read(0, 6).data == (frames / "003.jpg").read_bytes()
    assert _rows(study, "SELECT COUNT(*) FROM inference WHERE status = 'done'") == [(7,)]


def test_two_demos_into_one_study_keep_both(tmp_path: Path):
    out, study = tmp_path / "demo", tmp_path / "study"
    for seed, n in ((1, 6), (2, 4)):
        frames = _frames(tmp_path / f"frames-{seed}", n, start=seed * 10)
        demo = _cli(
            "demo",
            *("--count", str(n), "--fps", "0", "--frames", str(frames)),
            *("--out", str(out), "--study", str(study), *CLASSIFIER_ONLY),
        )
        assert demo.returncode == 0, demo.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["frames_sent"] == summary["frames_stored"] == n
        assert summary["study"] == str(study)
    sessions = _rows(study, "SELECT session, COUNT(*) FROM frames GROUP BY session")
    assert sorted(n for _, n in sessions) == [4, 6]


def test_a_recording_replayed_with_the_defaults_is_inferred_to_its_end(tmp_path: Path):
    """A backlog of 4 and a recording of 40: read at inference's pace, nothing skipped."""
    frames, study = _frames(tmp_path / "frames", 40), tmp_path / "study"
    run = _cli(
        "run",
        *("--source", f"dir://{frames}", "--study", str(study), "--backlog", "4"),
        *CLASSIFIER_ONLY,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stderr[run.stderr.index("{") : run.stderr.rindex("}") + 1])
    assert summary["frames_inferred"] == 40 and summary["frames_skipped"] == 0
    assert summary["frames_not_inferred"] == 0
    demo = _cli(
        "demo",
        *("--count", "60", "--fps", "0", "--frames", str(frames), "--backlog", "4"),
        *("--out", str(tmp_path / "demo"), *CLASSIFIER_ONLY),
    )
    assert demo.returncode == 0, demo.stderr
    doc = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert (doc["frames_sent"], doc["frames_inferred"], doc["frames_skipped"]) == (60, 60, 0)


def test_a_resume_bigger_than_the_backlog_infers_all_of_it(tmp_path: Path):
    frames, study = _frames(tmp_path / "frames", 30), tmp_path / "study"
    with Study(study) as s:  # stored, never inferred: a run killed before inference
        for i, path in enumerate(sorted(frames.iterdir())):
            s.add(1, i, path.read_bytes(), codec=1, timestamp_us=i)
        s.commit()
    empty = tmp_path / "empty"
    empty.mkdir()
    run = _cli(
        "run",
        *("--source", f"dir://{empty}", "--study", str(study), "--backlog", "4"),
        *CLASSIFIER_ONLY,
    )
    assert run.returncode == 0, run.stderr
    assert _rows(study, "SELECT status, COUNT(*) FROM inference GROUP BY status") == [("done", 30)]


class Exploding(Models):
    """The real models, meeting something no one planned for on some frames."""

    def infer(self, image):
        if int(image[0, 0, 0]) % 3 == 0:
            raise cv2.error("out of memory decoding something odd")  # type: ignore[call-arg]
        return super().infer(image)


def test_a_worker_meeting_an_unexpected_error_records_the_frame_and_goes_on(tmp_path: Path):
    frames = _frames(tmp_path / "frames", 24)
    (frames / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    config = settings.load(None, {"detector.enabled": False})
    models = Exploding.open(config)
    study = Study(tmp_path / "study")
    runtime = Runtime(DirSource(frames), study, [models, Exploding.open(config)], backlog=4)
    summary = runtime.run(threading.Event())  # returns: no hang
    study.close()
    rows = dict(_rows(tmp_path / "study", "SELECT status, COUNT(*) FROM inference GROUP BY 1"))
    failed = _rows(tmp_path / "study", "SELECT reason FROM inference WHERE status = 'failed'")
    assert sum(rows.values()) == 25 and rows["failed"] >= 2  # every frame has its outcome
    assert any("out of memory" in r for (r,) in failed)
    assert any("broken" in r or "frame 0:" in r for (r,) in failed)
    assert summary["frames_inferred"] == rows["done"]  # failures are not counted inferred
    assert summary["frames_failed"] == rows["failed"] and summary["error"] is None


def test_findings_piped_into_head_do_not_stop_the_study(tmp_path: Path):
    frames, study = _frames(tmp_path / "frames", 30), tmp_path / "study"
    run = _popen(
        *("run", "--source", f"dir://{frames}", "--study", str(study), "--jsonl"),
        *("--workers", "1", *CLASSIFIER_ONLY),  # one worker: the findings come in order
    )
    assert run.stdout is not None
    assert [json.loads(run.stdout.readline())["index"] for _ in range(2)] == [0, 1]
    run.stdout.close()  # what `| head -2` does
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert "cannot store" not in err and "Traceback" not in err
    assert _rows(study, "SELECT COUNT(*) FROM inference WHERE status = 'done'") == [(30,)]


def test_the_demo_meets_misuse_with_one_line(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = _cli("demo", "--frames", str(empty), "--out", str(tmp_path / "d"))
    assert bad.returncode == 2 and "no .jpg, .jpeg or .png files" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    negative = _cli("demo", "--count", "-5")
    assert negative.returncode == 2 and "must be at least 1" in negative.stderr


def test_the_demo_stopped_with_ctrl_c_still_summarises(tmp_path: Path):
    frames = _frames(tmp_path / "frames", 10)
    out = tmp_path / "demo"
    demo = _popen(
        *("demo", "--count", "100000", "--fps", "20", "--frames", str(frames)),
        *("--out", str(out), "--jsonl", *CLASSIFIER_ONLY),
    )
    assert demo.stdout is not None
    assert json.loads(demo.stdout.readline())["index"] == 0  # frames are being inferred
    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=120)
    assert "No such file" not in err and "Traceback" not in err, err
    summary = json.loads((out / "summary.json").read_text())
    stored = _rows(out / "study", "SELECT COUNT(*) FROM frames")[0][0]
    inferred = _rows(out / "study", "SELECT COUNT(*) FROM inference")[0][0]
    assert stored and summary["frames_stored"] == stored
    assert summary["frames_not_inferred"] == stored - inferred  # left for a resume
    assert "demo: study in" in err


def test_a_study_folder_removed_mid_study_stops_it_before_more_is_acknowledged(
    tmp_path: Path,
):
    link, truth, study = tmp_path / "recorder.pty", tmp_path / "truth.json", tmp_path / "study"
    sim, _ = spawn_simulator(
        *("--pty", str(link), "--mucosa", "--count", "300", "--fps", "30"),
        *("--log", str(truth), "--linger", "3"),
        cwd=REPO,
    )
    run = _popen(
        *("run", "--source", f"serial://{link}", "--study", str(study), "--jsonl"),
        *CLASSIFIER_ONLY,
    )
    assert run.stdout is not None
    for _ in range(10):
        assert json.loads(run.stdout.readline())
    shutil.rmtree(study)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert "removed or replaced" in err.strip().splitlines()[-1]
    assert sim.wait(timeout=120) != 0  # the recorder was not told everything arrived
    sent = json.loads(truth.read_text())["frames"]
    assert len(sent) < 300  # it stopped sending once nothing more was acknowledged


def _video(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for _ in range(n):
        writer.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    writer.release()
    return path


def test_videos_replayed_into_one_study_add_their_frames_once(tmp_path: Path):
    first, second = _video(tmp_path / "a.avi", 20, 0), _video(tmp_path / "b.avi", 15, 1)
    study = tmp_path / "study"
    summaries = []
    for video in (first, second, first):
        done = _cli("run", "--source", str(video), "--study", str(study), *CLASSIFIER_ONLY)
        assert done.returncode == 0, done.stderr
        summaries.append(
            json.loads(done.stderr[done.stderr.index("{") : done.stderr.rindex("}") + 1])
        )
    assert [s["frames_stored"] for s in summaries] == [20, 15, 0]
    assert summaries[2]["frames_already_held"] == 20
    rows = _rows(study, "SELECT idx, origin FROM frames ORDER BY idx")
    assert [i for i, _ in rows] == list(range(35))
    assert [o for _, o in rows] == [f"a.avi#{n}" for n in range(20)] + [
        f"b.avi#{n}" for n in range(15)
    ]
    assert _cli("study", "verify", str(study)).returncode == 0


def test_a_video_whose_name_is_not_utf8_is_one_line_not_a_crash(tmp_path: Path):
    video = _video(tmp_path / "v.avi", 3, 0)
    odd = os.fsencode(tmp_path) + b"/\xff\xfe.avi"
    os.rename(video, odd)
    done = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"edge.cli",
            b"run",
            b"--source",
            odd,
            b"--study",
            os.fsencode(tmp_path / "study"),
            *(a.encode() for a in CLASSIFIER_ONLY),
        ],
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    assert len(lines) == 1 and "name is not UTF-8" in lines[0], lines
