"""The live dashboard, in a real headless browser while a demo streams a simulated
sparse study of real polyps (benchmarks/polyp_sequences.py) over the pty link: the frame
counter advances, the latest frame is shown, and a polyp event appears as an alert, with
no request leaving the machine. The recorder hears the same alert (ALERT messages)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from benchmarks.polyp_sequences import held_out_backgrounds, held_out_polyps, write_sequence
from tests.browser import expect, page
from tests.conftest import HYPER_KVASIR, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
KVASIR_SEG = SHARED_DATA / "kvasir-seg"
pytestmark = [pytest.mark.slow, pytest.mark.data]


def _stored(tab) -> int:
    return int(tab.locator("#stored").inner_text())


def test_the_dashboard_follows_a_live_study_and_raises_the_alert(lean_python: Path, tmp_path: Path):
    if not (KVASIR_SEG / "images").is_dir() or not HYPER_KVASIR.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    frames = tmp_path / "frames"
    write_sequence(
        frames, held_out_polyps(KVASIR_SEG), held_out_backgrounds(HYPER_KVASIR), seed=5, polyps=2
    )
    count = len(list(frames.glob("*.jpg")))
    out = tmp_path / "demo"
    demo = subprocess.Popen(
        [
            str(lean_python),
            "-m",
            "edge.cli",
            "demo",
            "--frames",
            str(frames),
            "--count",
            str(count),
            "--fps",
            "6",
            "--out",
            str(out),
            "-q",
            "--no-report",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert demo.stderr is not None
        url = None
        while url is None:
            line = demo.stderr.readline()
            assert line, "the demo ended before it served its dashboard"
            if "stats http://" in line:
                url = line.rsplit(" ", 1)[-1].strip().removesuffix("/stats")
        rest: list[str] = []
        threading.Thread(target=lambda: rest.extend(demo.stderr), daemon=True).start()
        with page(url) as (tab, requests):
            tab.goto(url + "/")
            # Locator expectations poll from playwright's side: the page's CSP forbids the
            # string evaluation wait_for_function would need.
            stored = tab.locator("#stored")
            expect(stored).not_to_have_text("0", timeout=60_000)
            before = _stored(tab)
            expect(stored).not_to_have_text(str(before), timeout=30_000)
            assert _stored(tab) > before  # it follows the study without a reload
            alert = tab.locator("#alerts li.alert").first
            expect(alert).to_contain_text("polyp 1 confirmed at frame", timeout=90_000)
            frame = tab.locator("#frame")
            expect(frame).to_have_attribute("src", re.compile(r"/dashboard/frame\.jpg"))
            expect(tab.locator("#frame-name")).not_to_have_text("—")
            assert frame.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
            expect(tab.locator("#segment")).not_to_have_text("—")
        assert requests.outside == []
        assert all(u.startswith(url) for u in requests.seen)
        assert demo.wait(timeout=300) == 0, "".join(rest)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=60)
    recorder = json.loads((out / "recorder.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alerts"] >= 1 and len(recorder["alerts"]) == summary["alerts"]
    first = recorder["alerts"][0]
    assert first["event"] == 1 and first["frames"] >= 3 and 0 < first["box_share"] <= 1
