"""Profiles: which bundled models a study runs (colon or capsule), and the capsule profile
end to end over the link (the simulator on a real pty, the runtime a process)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundled import PROFILES, models_root
from edge.errors import BadInputError
from edge.runtime import config as settings
from edge.runtime.models import Models
from tests.study_runs import cli, finish_study, popen, read_truth, start_simulator, watchdog

BLEEDING = PROFILES["capsule"]["detector"]
# The bleeding detector is not bundled until it passes its int8 gates (issue 14: the first
# run, 60 epochs of YOLOv5n, failed them: OpenVINO int8 lost 1.58 points, LiteRT box
# parity 0.922). Until then the capsule profile's end-to-end tests cannot run.
BUNDLED = (models_root() / "detector" / str(BLEEDING) / "int8.tflite").is_file()
needs_bleeding = pytest.mark.skipif(not BUNDLED, reason=f"{BLEEDING} not bundled yet (issue 14)")


def test_colon_is_the_default_profile() -> None:
    config = settings.load(None)
    assert config["profile"] == "colon"
    assert config["classifier.enabled"] and config["detector.enabled"]
    assert config["detector.model"] == "yolov5s-256"
    assert config.origin["detector.model"] == "profile colon (default)"


def test_capsule_profile_and_what_overrides_it(tmp_path: Path) -> None:
    config = settings.load(None, {"profile": "capsule"})
    assert not config["classifier.enabled"]
    assert config["detector.model"] == BLEEDING
    # A role's own settings win over its profile's.
    toml = tmp_path / "c.toml"
    toml.write_text('profile = "capsule"\n[classifier]\nenabled = true\n')
    mixed = settings.load(toml, {"detector.model": "yolov5s-256"})
    assert mixed["classifier.enabled"]  # with the bundled default classifier
    assert mixed["detector.model"] == "yolov5s-256"
    assert mixed.origin["detector.model"] == "command line"


def test_unknown_profile_is_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('profile = "stomach"\n')
    with pytest.raises(BadInputError, match=r"c\.toml: profile must be one of colon, capsule"):
        settings.load(toml)


@needs_bleeding
def test_capsule_models_open_the_bleeding_detector() -> None:
    models = Models.open(settings.load(None, {"profile": "capsule"}))
    try:
        assert models.classifier is None and models.detector is not None
        assert models.detector.labels == ["bleeding"]
        assert models.detector.fov is not None  # capsule preprocessing, from its card
        assert models.describe()["detector"]["name"] == BLEEDING
    finally:
        models.close()


def _capsule_frames(folder: Path, n: int) -> Path:
    """Round capsule-like frames; half with a dark red patch (as bleeding looks)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:224, 0:224] + 0.5
    outside = (x - 112) ** 2 + (y - 112) ** 2 > 110**2
    for i in range(n):
        base = cv2.GaussianBlur(rng.integers(80, 230, (224, 224, 3), dtype=np.uint8), (0, 0), 6)
        frame = (base * np.array([0.55, 0.75, 1.0])).astype(np.uint8)  # BGR: pinkish
        if i % 2:
            cv2.circle(frame, (90 + i % 40, 120), 30, (20, 20, 140), -1)
        frame[outside] = 0
        assert cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    return folder


@needs_bleeding
@pytest.mark.slow
def test_run_capsule_profile_over_the_link(tmp_path: Path) -> None:
    """`run --profile capsule` from the recorder simulator: every frame stored once and
    inferred by the bleeding detector, the findings in the study under its name."""
    frames = _capsule_frames(tmp_path / "frames", 30)
    sim, link = start_simulator(tmp_path, "--count", "30", "--frames", frames)
    study = tmp_path / "study"
    run = popen(
        *("run", "--source", f"serial://{link}", "--study", study),
        *("--profile", "capsule", "--no-http", "-q"),
    )
    with watchdog(sim, run):
        err = finish_study(sim, run)
    summary = json.loads(err[err.index("{") :])
    _, sent = read_truth(tmp_path)
    assert summary["error"] is None and len(sent) == 30
    assert summary["frames_stored"] == 30 and summary["frames_inferred"] == 30
    assert summary["models"]["detector"]["name"] == BLEEDING
    assert "classifier" not in summary["models"]
    db = sqlite3.connect(f"file:{study / 'study.db'}?mode=ro", uri=True)
    try:
        models = {m for (m,) in db.execute("SELECT DISTINCT model FROM findings")}
        labels = {lab for (lab,) in db.execute("SELECT DISTINCT label FROM findings")}
        done = db.execute("SELECT COUNT(*) FROM inference WHERE status = 'done'").fetchone()[0]
    finally:
        db.close()
    assert done == 30
    assert models <= {"detector"} and labels <= {"bleeding"}
    assert cli("study", "verify", study).returncode == 0
    done = cli("report", study, "--json", "-")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["events_by_kind"]) == {"bleeding"}  # no "0 distinct polyps"
    assert "distinct polyps" not in (study / "report.html").read_text(encoding="utf-8")


@needs_bleeding
@pytest.mark.slow
def test_demo_capsule_profile(tmp_path: Path) -> None:
    done = cli("demo", "--profile", "capsule", "--count", "40", "--fps", "0", "--out", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["frames_sent"] == doc["frames_stored"] == doc["frames_inferred"] == 40
    assert not doc["frames_lost"] and doc["frames_skipped"] == 0
    assert "frames with bleeding" in done.stderr
    assert "capsule frames" in done.stderr or "synthetic" in done.stderr
