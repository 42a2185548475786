"""What the recorder hears back from a study: one RESULT for every frame it sent, the
names of the class ids, and SKIPPED for frames a live study let go past. The recorder
is the simulator on a real pty; its account (--log) is what it received."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.bundled import default_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # demos in processes of their own


def _demo(out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--out", str(out), "--no-http", "-q", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((out / "recorder.json").read_text())


def test_every_frame_sent_gets_one_result_naming_its_class(tmp_path: Path):
    truth = _demo(tmp_path, "--count", "40", "--fps", "0")
    sent = {f"{s}:{i}" for s, i, _, _ in truth["frames"]}
    assert len(sent) == 40
    assert set(truth["results"]) == sent
    assert set(truth["result_status"].values()) == {"ok"}
    assert all(n == 0 for n in truth["result_repeats"].values())
    (session,) = {str(s) for s, *_ in truth["frames"]}
    classifier = default_model("classification", "litert")
    detector = default_model("detection", "litert")
    assert truth["classes"][session] == {"frame": classifier.labels, "box": detector.labels}
    # Each RESULT's class is the one the study stored for that frame.
    db = sqlite3.connect(tmp_path / "study" / "study.db")
    stored = {
        f"{s}:{i}": label
        for s, i, label in db.execute(
            "SELECT session, idx, label FROM findings WHERE model = 'classifier'"
        )
    }
    polyps = {
        f"{s}:{i}": n
        for s, i, n in db.execute(
            "SELECT session, idx, COUNT(*) FROM findings WHERE model = 'detector' "
            "GROUP BY session, idx"
        )
    }
    db.close()
    assert set(stored) == sent
    for key, (class_id, _, boxes) in truth["results"].items():
        assert classifier.labels[class_id] == stored[key], key
        assert boxes == polyps.get(key, 0), key


def test_a_live_study_that_falls_behind_says_skipped_and_nothing_more(tmp_path: Path):
    # 300 frames a second into a backlog of one: no device here keeps up, so most go past.
    truth = _demo(tmp_path, "--count", "60", "--fps", "300", "--backlog", "1")
    summary = json.loads((tmp_path / "summary.json").read_text())
    sent = {f"{s}:{i}" for s, i, _, _ in truth["frames"]}
    assert set(truth["results"]) == sent
    status = list(truth["result_status"].values())
    assert status.count("skipped") == summary["frames_skipped"] > 0
    assert status.count("ok") == 60 - summary["frames_skipped"]
    assert all(n == 0 for n in truth["result_repeats"].values())
    # Skipped live, inferred for the study all the same.
    assert summary["frames_inferred"] == 60
