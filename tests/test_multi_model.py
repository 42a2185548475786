"""Several detectors side by side: [detector.<name>] tables beside [detector], each on its
own backend, and what each found in the findings, RESULT boxes, /stats, /metrics and the
study. End to end over the link (the simulator on a real pty, the runtime a process)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from edge.errors import BadInputError
from edge.runtime import config as settings
from tests.conftest import SHARED_DATA
from tests.study_runs import cli, popen, read_truth, start_simulator, stop_runtime, watchdog

KVASIR = SHARED_DATA / "kvasir-seg" / "images"
LOOSE = '[detector.loose]\nmodel = "yolov5s-256"\nbackend = "onnxruntime"\nconf = 0.05\n'


def _load(tmp_path: Path, text: str, overrides: dict | None = None) -> settings.Config:
    path = tmp_path / "capsule-edge.toml"
    path.write_text(text, encoding="utf-8")
    return settings.load(path, overrides)


def test_further_detectors_are_roles_in_file_order(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        LOOSE + '[detector.bleeding]\nmodel = "b.tflite"\nthreads = 2\n[detector]\nconf = 0.3\n',
    )
    assert config.roles() == ["classifier", "detector", "detector.loose", "detector.bleeding"]
    assert config["detector.loose.backend"] == "onnxruntime"
    assert config["detector.loose.conf"] == 0.05
    assert config["detector.bleeding.threads"] == 2
    assert config["detector.bleeding.backend"] == "litert"  # its own default, not inherited
    assert config.origin["detector.bleeding.iou"] == "default"
    assert config["detector.conf"] == 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[detector.x]\nbackend = 'litert'\n", r"\[detector\.x\] needs a model"),
        ("[detector.x]\nmodel = 'a.tflite'\nfoo = 1\n", "unknown key detector.x.foo"),
        ("[detector.x]\nmodel = 'a.tflite'\nconf = 2.0\n", "detector.x.conf must be between"),
        ('[detector."Big One"]\nmodel = "a.tflite"\n', r"\[detector\.Big One\]: a detector's name"),
        (
            "[detector.x]\nmodel = 'a.tflite'\nbackend = 'litert'\ndevice = 'NPU'\n",
            r"detector\.x\.device = 'NPU'.*\[detector\.x\]",
        ),
    ],
)
def test_a_bad_further_detector_is_one_line_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(BadInputError, match=message):
        _load(tmp_path, text)


def test_every_model_setting_reaches_further_detectors(tmp_path: Path) -> None:
    config = _load(tmp_path, LOOSE, {"*.threads": 1, "detector.loose.conf": 0.5})
    assert [config[f"{r}.threads"] for r in config.roles()] == [1, 1, 1]
    assert config["detector.loose.conf"] == 0.5
    assert config.origin["detector.loose.conf"] == "command line"
    with pytest.raises(BadInputError, match=r"unknown setting detector\.other\.conf"):
        _load(tmp_path, LOOSE, {"detector.other.conf": 0.5})


def _stats_url(run) -> str:
    while True:
        line = run.stderr.readline()
        assert line, "the runtime ended before it started serving"
        if "stats http://" in line:
            return line.rsplit(" ", 1)[-1].strip().removesuffix("/stats")


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not KVASIR.is_dir(), reason=f"real data not present at {KVASIR}")
def test_two_detectors_over_the_link_each_in_findings_results_stats_and_study(
    tmp_path: Path,
) -> None:
    """The bundled polyp detector twice: int8 LiteRT as [detector], fp32 ONNX Runtime at a
    looser confidence as [detector.loose]. Each box reaches the recorder under its own
    detector's class id, and each detector's count is the study's."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted(KVASIR.glob("*.jpg"))[:12]:
        shutil.copy(path, frames / path.name)
    config = tmp_path / "two.toml"
    config.write_text(LOOSE, encoding="utf-8")
    sim, link = start_simulator(tmp_path, "--count", "12", "--frames", frames)
    study = tmp_path / "study"
    run = popen(
        *("run", "--config", config, "--source", f"serial://{link}", "--study", study),
        *("--no-classifier", "--http-port", "0", "-q"),
    )
    with watchdog(sim, run):
        url = _stats_url(run)
        assert sim.wait() == 0
        deadline = time.monotonic() + 60
        while True:  # figures are published 4 times a second: wait for the last frame's
            stats = json.loads(urllib.request.urlopen(f"{url}/stats", timeout=10).read())
            if stats["counters"].get("inferred") == 12 or time.monotonic() > deadline:
                break
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        err = stop_runtime(run)
    summary = json.loads(err[err.index("{") :])
    truth, sent = read_truth(tmp_path)
    assert summary["error"] is None and len(sent) == 12 and summary["frames_inferred"] == 12
    described = summary["models"]
    assert set(described) == {"detector", "detector.loose"}
    assert described["detector"]["backend"] == "litert"
    assert described["detector.loose"]["backend"] == "onnxruntime"
    assert described["detector.loose"]["precision"] == "fp32"

    db = sqlite3.connect(f"file:{study / 'study.db'}?mode=ro", uri=True)
    try:
        stored = Counter(
            (f"{s}:{i}", model)
            for s, i, model in db.execute("SELECT session, idx, model FROM findings")
        )
    finally:
        db.close()
    (session,) = {s for s, _ in sent}
    assert truth["classes"][str(session)]["box"] == ["polyp", "polyp"]
    both = 0
    for key, boxes in truth["result_boxes"].items():
        ids = Counter(class_id for class_id, _ in boxes)
        assert ids[0] == stored[(key, "detector")], key
        assert ids[1] == stored[(key, "detector.loose")], key
        assert {name for _, name in boxes} <= {"polyp"}
        both += bool(ids[0] and ids[1])
    assert both > 0  # frames where both detectors boxed something: the offset was used

    with_boxes = Counter(model for (key, model), n in stored.items() if n)
    assert summary["detection_frames"] == {
        "detector": with_boxes["detector"],
        "detector.loose": with_boxes["detector.loose"],
    }
    assert with_boxes["detector.loose"] >= with_boxes["detector"] > 0
    loose = stats["models"]["detector.loose"]
    assert loose["frames_with_boxes"] == with_boxes["detector.loose"]
    assert loose["boxes"] == sum(n for (_, m), n in stored.items() if m == "detector.loose")
    assert loose["backend"] == "onnxruntime" and loose["labels"] == ["polyp"]
    n = with_boxes["detector.loose"]
    assert f'capsule_edge_detection_frames_total{{model="detector.loose"}} {n}.0' in metrics
    assert "capsule_edge_stage_ms" in metrics and 'stage="detector.loose"' in metrics

    done = cli("report", study, "--json", "-")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["models"]) == {"detector", "detector.loose"}
    assert report["models"]["detector.loose"]["backend"] == "onnxruntime"
    assert set(report["events_by_kind"]) == {"polyp"}
