"""Every class score of every frame is kept (schema 2: the timeline is smoothed over
them), and a study of schema 1, which kept only the top class, is migrated when a
runtime opens it and read by the report from its top classes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundled import default_model
from edge.reading.study_data import load
from edge.study import schema
from edge.study.store import Study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lean = REPO / ".venv" / "bin" / "python"
    if not lean.exists():
        pytest.skip("the lean environment .venv is not built (make test builds it)")
    root = tmp_path_factory.mktemp("scores")
    rng = np.random.default_rng(1)
    (root / "frames").mkdir()
    for k in range(6):
        image = np.clip(rng.normal(120 + 20 * k, 30, (96, 128, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "frames" / f"{k:03d}.jpg"), image)
    done = subprocess.run(
        [
            *(str(lean), "-m", "edge.cli", "run", "--source", f"dir://{root / 'frames'}"),
            *("--study", str(root / "study"), "--no-http", "--no-detector", "-q"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return root / "study"


@pytest.mark.slow
def test_every_class_score_of_every_frame_is_stored(study: Path):
    labels = default_model("classification", "litert").labels
    db = sqlite3.connect(study / "study.db")
    top = dict(
        ((s, i), label)
        for s, i, label in db.execute(
            "SELECT session, idx, label FROM findings WHERE model = 'classifier'"
        )
    )
    rows = db.execute("SELECT session, idx, scores FROM class_scores").fetchall()
    db.close()
    assert len(rows) == len(top) == 6
    for s, i, text in rows:
        scores = json.loads(text)
        assert sorted(scores) == sorted(labels)
        assert sum(scores.values()) == pytest.approx(1.0, abs=0.02)  # int8: 1/256 steps
        assert max(scores, key=scores.get) == top[(s, i)]


@pytest.mark.slow
def test_a_schema_1_study_is_read_from_its_top_classes_and_migrated_on_open(study: Path):
    db = sqlite3.connect(study / "study.db")
    with db:
        db.execute("DROP TABLE class_scores")
        db.execute("DROP TABLE sealing")  # schema 3
        db.execute("PRAGMA user_version = 1")
    top = dict(
        db.execute("SELECT idx, label FROM findings WHERE model = 'classifier' ORDER BY idx")
    )
    db.close()
    data = load(study)  # read-only: nothing migrated yet
    assert data.frames == 6 and not np.isnan(data.scores).any()
    argmax = [data.labels[j] for j in data.scores.argmax(axis=1)]
    assert argmax == [top[k] for k in sorted(top)]
    with Study(study) as opened:
        assert any("schema 1 -> 2" in m for m in opened.migrations)
    db = sqlite3.connect(study / "study.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
    assert db.execute("SELECT COUNT(*) FROM class_scores").fetchone()[0] == 0
    db.close()


@pytest.mark.slow
def test_a_study_without_a_detector_reports_its_timeline_and_no_events(study: Path):
    from edge.reading.analysis import read_study
    from edge.reading.report import write

    reading = read_study(study)
    data = write(reading, study / "report.html", study / "report.json")
    assert data["polyps"] == 0 and data["events"] == [] and data["frames"] == 6
    assert data["segments"] and data["models"].keys() == {"classifier"}
    assert "detector" not in (study / "report.html").read_text()
