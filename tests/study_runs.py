"""Link studies as a user runs them, for the Done-when tests: the simulator and the runtime
as processes on a real pty, `capsule-edge study` to look, the simulator's truth to check."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import crc32c
import cv2
import numpy as np

from edge.cli.simulate import spawn_simulator

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CLASSIFIER_ONLY = ["--no-detector", "--no-http", "-q"]
HANG_S = 240


def popen(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=ENV,
    )


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=HANG_S,
    )


@contextlib.contextmanager
def watchdog(*procs: subprocess.Popen) -> Iterator[None]:
    """Kill the processes if the test hangs (a guard, not a pace)."""
    timer = threading.Timer(HANG_S, lambda: [p.kill() for p in procs if p.poll() is None])
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def write_frames(folder: Path, n: int = 40) -> Path:
    """``n`` small distinct JPEGs for the simulator to send in turn."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"{i:02d}.jpg"), image)
    return folder


def start_simulator(tmp: Path, *args: str | Path) -> tuple[subprocess.Popen, Path]:
    link = tmp / "recorder.pty"
    sim, _ = spawn_simulator(
        *("--pty", str(link), "--fps", "0", "--log", str(tmp / "truth.json")),
        *("--linger", "10", *map(str, args)),
        cwd=REPO,
        env=ENV,
    )
    return sim, link


def start_runtime(link: Path, study: Path, *extra: str) -> subprocess.Popen:
    return popen("run", "--source", f"serial://{link}", "--study", study, *CLASSIFIER_ONLY, *extra)


def stop_runtime(run: subprocess.Popen) -> str:
    """Ctrl-C the runtime once the simulator is done; its stderr."""
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=HANG_S)
    assert run.returncode == 0, err[-3000:]
    return err


def finish_study(sim: subprocess.Popen, run: subprocess.Popen) -> str:
    """Wait for the simulator to be done (everything acknowledged), then stop the
    runtime; its stderr."""
    if sim.wait() != 0:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=HANG_S)
        sim_err = sim.stderr.read() if sim.stderr else ""
        raise AssertionError(f"simulate failed: {sim_err}\n--- run:\n{err[-3000:]}")
    return stop_runtime(run)


def verify_json(study: Path, *extra: str | Path) -> dict:
    done = cli("study", "verify", study, "--json", *extra)
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report


def exported_crcs(study: Path, out: Path, *extra: str | Path) -> dict[tuple[int, int], int]:
    """The study's frames as ``study export`` writes them: (session, index) -> CRC-32C."""
    done = cli("study", "export", study, "--frames", out, *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    crcs = {}
    for path in out.iterdir():
        session, index = map(int, path.stem.split("-"))
        crcs[(session, index)] = crc32c.crc32c(path.read_bytes())
    return crcs


def read_truth(tmp: Path) -> tuple[dict, dict[tuple[int, int], int]]:
    truth = json.loads((tmp / "truth.json").read_text())
    sent = {(s, i): crc for s, i, _, crc in truth["frames"]}
    return truth, sent


def read_ledger(study: Path) -> dict[tuple[int, int], tuple[str, str | None]]:
    db = sqlite3.connect(f"file:{study / 'study.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT session, idx, outcome, reason FROM ledger").fetchall()
    finally:
        db.close()
    return {(s, i): (o, r) for s, i, o, r in rows}


def check_content(
    study: Path, tmp: Path, delivered: dict[tuple[int, int], int], *key: str | Path
) -> dict:
    """verify passes, counts exactly ``delivered``, and every frame is byte-identical
    (``key``: an encrypted study's ``--key`` and its file, for verify and export)."""
    report = verify_json(study, *key)
    assert report["ok"], report["problems"][:5]
    assert report["frames"] == len(delivered)
    assert report["ledger_rows"] >= len(delivered)
    assert exported_crcs(study, tmp / "exported", *key) == delivered
    return report


# --- (a) 10 SIGKILLs at random moments during a 2,000-frame link study -------------------
