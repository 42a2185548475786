"""How a study is set up: bad settings and models as one-line errors, busy ports, silent
fall-backs warned about, workers and threads chosen for the source."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.runtime import config as settings
from edge.runtime.study_run import run_study
from tests.runtime_helpers import (
    CLASSIFIER,
    CORES,
    frame_folder,
    study_db,
)


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
    frames = frame_folder(tiny_dataset, tmp_path, 4)
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
    (record,) = study_db(study).execute("SELECT settings FROM runs").fetchall()
    described = json.loads(record[0])["models"]["classifier"]
    assert "no NPU" in described["fallback"] and "CPU" in described["device"]


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
    frames = frame_folder(tiny_dataset, tmp_path, 6)
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
    (record,) = study_db(study).execute("SELECT settings FROM runs").fetchall()
    chosen = json.loads(record[0])["settings"]
    assert (chosen["pipeline.workers"], chosen["classifier.threads"]) == (workers, setting)
